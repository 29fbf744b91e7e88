//! `pipeline.toml` in the working directory, and the environment variables.

use super::{Layer, Mode, RayConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The configuration file read from the working directory.
pub const CONFIG_FILE: &str = "pipeline.toml";
/// The environment variable that moves the state folder.
pub const STATE_DIR_ENV: &str = "PIPELINE_STATE_DIR";
/// The environment variable that turns recording off (`0`) or on.
pub const RECORD_ENV: &str = "PIPELINE_RECORD";
/// The environment variable with the Ray dashboard's address.
pub const RAY_ADDRESS_ENV: &str = "PIPELINE_RAY_ADDRESS";
/// The environment variable with a bearer token for the Ray cluster.
pub const RAY_TOKEN_ENV: &str = "PIPELINE_RAY_TOKEN";
/// The environment variable that says how remote steps reach the cluster (`auto`, `runner`,
/// `jobs`).
pub const RAY_BACKEND_ENV: &str = "PIPELINE_RAY_BACKEND";
/// The environment variable with where the controller listens for its runner.
pub const RUNNER_LISTEN_ENV: &str = "PIPELINE_RAY_RUNNER_LISTEN";
/// The environment variable with the address the runner reaches the controller at.
pub const RUNNER_URL_ENV: &str = "PIPELINE_RAY_RUNNER_URL";
/// The environment variable with the cap of step logs (`512MiB`, `1GB`, bytes).
pub const LOG_CAP_ENV: &str = "PIPELINE_LOG_CAP";
/// The environment variable that says how runs show progress (`auto`, `bar`, `plain`, `off`).
pub const PROGRESS_ENV: &str = "PIPELINE_PROGRESS";

/// What `pipeline.toml` may say; every key is optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    mode: Option<Mode>,
    state_dir: Option<PathBuf>,
    record: Option<bool>,
    default_queue: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    busy_timeout: Option<std::time::Duration>,
    /// `log_cap = "512MiB"`.
    log_cap: Option<String>,
    /// `progress = "off"`.
    progress: Option<super::Progress>,
    ray: Option<RayConfig>,
}

/// A size as people write it: bytes, or a number with `KB`/`MB`/`GB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB` (powers of 1024).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (say `512MiB`)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{text}` (say `512MiB`)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// `busy_timeout = "5s"`, in humantime's form.
mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

pub(super) fn parse(text: &str) -> Result<File, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// The layer of `pipeline.toml` in `cwd` (paths in it are relative to `cwd`), then of the
/// environment over it.
pub(super) fn layer(cwd: &Path) -> Layer {
    let file = match std::fs::read_to_string(cwd.join(CONFIG_FILE)) {
        Ok(text) => parse(&text).unwrap_or_else(|e| {
            crate::diag::warn(format_args!("ignoring {CONFIG_FILE}: {e}"));
            File::default()
        }),
        Err(_) => File::default(),
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let ray = file.ray.unwrap_or_default();
    let log_cap = env(LOG_CAP_ENV)
        .map(|v| (LOG_CAP_ENV, v))
        .or_else(|| file.log_cap.map(|v| (CONFIG_FILE, v)))
        .and_then(|(source, v)| {
            parse_size(&v)
                .map_err(|e| crate::diag::warn(format_args!("ignoring the log cap of {source}: {e}")))
                .ok()
        });
    let progress = match env(PROGRESS_ENV).map(|v| v.parse()) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            crate::diag::warn(format_args!("ignoring {PROGRESS_ENV}: {e}"));
            file.progress
        }
        None => file.progress,
    };
    Layer {
        mode: file.mode,
        progress,
        state_dir: env(STATE_DIR_ENV)
            .map(PathBuf::from)
            .or_else(|| file.state_dir.map(|d| cwd.join(d))),
        recording: env(RECORD_ENV).map(|v| v != "0").or(file.record),
        default_queue: file.default_queue,
        busy_timeout: file.busy_timeout,
        log_cap,
        ray_backend: match env(RAY_BACKEND_ENV).map(|v| v.parse()) {
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => {
                crate::diag::warn(format_args!("ignoring {RAY_BACKEND_ENV}: {e}"));
                None
            }
            None => None,
        },
        ray: Some(RayConfig {
            address: env(RAY_ADDRESS_ENV).or(ray.address),
            token: env(RAY_TOKEN_ENV).or(ray.token),
            headers: ray.headers,
            backend: ray.backend,
            python: ray.python,
            runner_listen: env(RUNNER_LISTEN_ENV).or(ray.runner_listen),
            runner_url: env(RUNNER_URL_ENV).or(ray.runner_url),
        }),
        cache_refresh: None,
        run_id: None,
        origin: None,
        resume: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sets_every_field_and_rejects_unknown_keys() {
        let file = parse(
            "mode = \"local\"\nstate_dir = \"runs/here\"\nrecord = false\ndefault_queue = \"gpu\"\n\
             busy_timeout = \"1s 500ms\"\nlog_cap = \"512MiB\"\n[ray]\naddress = \"http://ray:8265\"\n",
        )
        .unwrap();
        assert_eq!(file.mode, Some(Mode::Local));
        assert_eq!(file.state_dir, Some(PathBuf::from("runs/here")));
        assert_eq!(file.record, Some(false));
        assert_eq!(file.default_queue.as_deref(), Some("gpu"));
        assert_eq!(file.busy_timeout, Some(std::time::Duration::from_millis(1500)));
        assert_eq!(file.ray.unwrap().address.as_deref(), Some("http://ray:8265"));
        assert!(parse("").unwrap().state_dir.is_none());
        assert!(parse("state_dri = \"x\"").err().unwrap().contains("unknown field"));
        assert!(parse("mode = \"fast\"").err().unwrap().contains("unknown variant"));
        assert!(parse("busy_timeout = \"soon\"").is_err());
        assert_eq!(file.log_cap.as_deref(), Some("512MiB"));
        let ray = parse(
            "[ray]\nbackend = \"jobs\"\npython = \"/opt/ray/bin/python\"\nrunner_url = \"http://10.0.0.4:9000\"\n",
        )
        .unwrap()
        .ray
        .unwrap();
        assert_eq!(ray.backend, super::super::RemoteBackend::Jobs);
        assert_eq!(ray.python.as_deref(), Some("/opt/ray/bin/python"));
        assert_eq!(ray.runner_url.as_deref(), Some("http://10.0.0.4:9000"));
        assert!(
            parse("[ray]\nbackend = \"serve\"")
                .err()
                .unwrap()
                .contains("unknown variant")
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2 GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1kib"), Ok(1024));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("3 parsecs").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("99999999999GiB").unwrap_err().contains("too large"));
    }
}
