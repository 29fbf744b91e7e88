//! A client of Ray's Jobs REST API (the dashboard's HTTP port): cluster check, package upload,
//! job submission, status, logs and stop. Facts it relies on: a resubmitted `submission_id`
//! answers HTTP 500 "already exists" (treated as submitted); packages are uploaded with
//! `PUT /api/packages/gcs/NAME.zip` and used as `working_dir: gcs://NAME.zip`.

use crate::config::{DEFAULT_ADDRESS, RayConfig};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Why a request to the Ray cluster failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RayError {
    /// The client could not be set up from its configuration (a bad token or header).
    #[error("{0}")]
    Config(String),
    /// No answer: refused, timed out, a TLS or DNS failure.
    #[error("{what}: {reason}")]
    Unreachable {
        /// The request (`no answer` for the first check).
        what: &'static str,
        /// The transport's error, with its causes.
        reason: String,
    },
    /// An HTTP error status.
    #[error("{what} answered HTTP {}: {body}", http_status(*status))]
    Status {
        /// The request.
        what: &'static str,
        /// The status code.
        status: u16,
        /// The answer's body, trimmed.
        body: String,
    },
    /// An answer that is not what a Ray dashboard sends.
    #[error("{what}: {reason}")]
    Unexpected {
        /// The request, or what the answer should have been.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The executable could not be read or packaged for upload.
    #[error("{0}")]
    Package(String),
}

impl RayError {
    /// The error for an answer with an error status, its body included.
    async fn status(what: &'static str, response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default().trim().to_string();
        Self::Status { what, status, body }
    }
}

fn http_status(code: u16) -> String {
    match reqwest::StatusCode::from_u16(code) {
        Ok(status) => status.to_string(),
        Err(_) => code.to_string(),
    }
}

/// A job's state as Ray reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct JobInfo {
    /// PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED.
    pub status: String,
    /// Ray's explanation of the status.
    #[serde(default)]
    pub message: Option<String>,
    /// The entrypoint's exit code, once it exited.
    #[serde(default)]
    pub driver_exit_code: Option<i64>,
}

impl JobInfo {
    /// True once the job will not change state any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "SUCCEEDED" | "FAILED" | "STOPPED")
    }
}

/// A client of a Ray cluster's Jobs REST API (cheap to clone: clones share connections).
#[derive(Clone)]
pub struct RayClient {
    http: reqwest::Client,
    base: String,
}

impl RayClient {
    /// A client for the cluster `config` names.
    pub fn new(config: &RayConfig) -> Result<Self, RayError> {
        let base = config
            .address
            .clone()
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_string())
            .trim_end_matches('/')
            .to_string();
        let mut headers = HeaderMap::new();
        if let Some(token) = &config.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| RayError::Config(format!("bad token: {e}")))?;
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| RayError::Config(format!("bad header name `{name}`: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| RayError::Config(format!("bad value for header `{name}`: {e}")))?;
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| RayError::Config(describe(&e)))?;
        Ok(Self { http, base })
    }

    /// The dashboard address.
    pub fn address(&self) -> &str {
        &self.base
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &'static str) -> Result<reqwest::Response, RayError> {
        request.send().await.map_err(|e| RayError::Unreachable {
            what,
            reason: describe(&e),
        })
    }

    /// Checks that the cluster answers; gives Ray's version.
    pub async fn check(&self) -> Result<String, RayError> {
        #[derive(Deserialize)]
        struct Version {
            ray_version: String,
        }
        let response = self
            .send(
                self.http
                    .get(format!("{}/api/version", self.base))
                    .timeout(Duration::from_secs(10)),
                "no answer",
            )
            .await?;
        if !response.status().is_success() {
            return Err(RayError::status("it", response).await);
        }
        response
            .json::<Version>()
            .await
            .map(|v| v.ray_version)
            .map_err(|e| RayError::Unexpected {
                what: "not a Ray dashboard",
                reason: describe(&e),
            })
    }

    /// Uploads the executable, with the warm runner's script beside it, as a `working_dir`
    /// package named after their hash, unless the cluster has it already; gives the package's
    /// URI.
    pub async fn ensure_package(&self, exe: &Path) -> Result<String, RayError> {
        // Runs of one process share one upload: concurrent uploads of one package break the
        // jobs that unpack it meanwhile.
        static UPLOADED: tokio::sync::Mutex<Vec<(String, String)>> = tokio::sync::Mutex::const_new(Vec::new());
        let bytes =
            std::fs::read(exe).map_err(|e| RayError::Package(format!("cannot read `{}`: {e}", exe.display())))?;
        let mut hasher = blake3::Hasher::new();
        hasher.update(&bytes);
        hasher.update(super::runner::SCRIPT.as_bytes());
        let hash = hasher.finalize().to_hex();
        let name = format!("_ray_pkg_{}.zip", &hash[..32]);
        let mut uploaded = UPLOADED.lock().await;
        let key = (self.base.clone(), name.clone());
        if uploaded.contains(&key) {
            return Ok(format!("gcs://{name}"));
        }
        let url = format!("{}/api/packages/gcs/{name}", self.base);
        let found = self.send(self.http.get(&url), "package check").await?;
        if !found.status().is_success() {
            let file_name = exe
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| RayError::Package("the executable has no file name".into()))?;
            let zip = zip_executable(file_name, &bytes)
                .map_err(|e| RayError::Package(format!("cannot zip the executable: {e}")))?;
            let put = self.send(self.http.put(&url).body(zip), "package upload").await?;
            if !put.status().is_success() {
                return Err(RayError::status("package upload", put).await);
            }
        }
        uploaded.push(key);
        Ok(format!("gcs://{name}"))
    }

    /// Submits a job; a job already submitted under this id counts as submitted.
    pub async fn submit(&self, body: &serde_json::Value) -> Result<(), RayError> {
        let response = self
            .send(
                self.http.post(format!("{}/api/jobs/", self.base)).json(body),
                "job submission",
            )
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        if text.contains("already exists") {
            return Ok(());
        }
        Err(RayError::Status {
            what: "job submission",
            status: status.as_u16(),
            body: text.trim().to_string(),
        })
    }

    /// The job's state.
    pub async fn status(&self, id: &str) -> Result<JobInfo, RayError> {
        let response = self
            .send(self.http.get(format!("{}/api/jobs/{id}", self.base)), "job status")
            .await?;
        if !response.status().is_success() {
            return Err(RayError::status("job status", response).await);
        }
        response.json().await.map_err(|e| RayError::Unexpected {
            what: "job status",
            reason: describe(&e),
        })
    }

    /// The job's output so far.
    pub async fn logs(&self, id: &str) -> Result<String, RayError> {
        #[derive(Deserialize)]
        struct Logs {
            logs: String,
        }
        let response = self
            .send(self.http.get(format!("{}/api/jobs/{id}/logs", self.base)), "job logs")
            .await?;
        response
            .json::<Logs>()
            .await
            .map(|l| l.logs)
            .map_err(|e| RayError::Unexpected {
                what: "job logs",
                reason: describe(&e),
            })
    }

    /// Asks the cluster to stop the job.
    pub async fn stop(&self, id: &str) -> Result<(), RayError> {
        self.send(self.http.post(format!("{}/api/jobs/{id}/stop", self.base)), "job stop")
            .await
            .map(drop)
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// A zip holding the executable, with its run bit, and the warm runner's script.
fn zip_executable(name: &str, bytes: &[u8]) -> zip::result::ZipResult<Vec<u8>> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755)
        .large_file(bytes.len() as u64 >= u64::from(u32::MAX));
    out.start_file(name, options)?;
    out.write_all(bytes)?;
    let script = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    out.start_file(super::runner::SCRIPT_NAME, script)?;
    out.write_all(super::runner::SCRIPT.as_bytes())?;
    Ok(out.finish()?.into_inner())
}
