//! Artifacts in object storage (`s3://`, `gs://`, `az://`, `http(s)://`), through the
//! `object_store` crate, for workers that do not share the controller's filesystem. An
//! artifact there is staged through a local file: written locally and uploaded, downloaded
//! and read, so the checked, streaming artifact format is the same everywhere.
//!
//! Credentials and endpoints come from the environment, as `object_store` reads them
//! (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`...), on the controller and on every worker node.
//!
//! Without the `object-store` feature, such URIs are still recognised, and using one is a
//! clear error that names the feature.

#[cfg(not(feature = "object-store"))]
use pipeline_core::StepError;
#[cfg(not(feature = "object-store"))]
use std::path::Path;

/// True for the URIs this module handles.
pub(crate) fn is_remote(uri: &str) -> bool {
    [
        "s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://", "http://", "https://",
    ]
    .iter()
    .any(|s| uri.starts_with(s))
}

#[cfg(feature = "object-store")]
pub(crate) use client::{download, size, upload};

/// Uploading needs the `object-store` feature: without it, a clear error.
#[cfg(not(feature = "object-store"))]
pub(crate) fn upload(_local: &Path, uri: &str) -> Result<(), StepError> {
    Err(disabled(uri))
}

/// Downloading needs the `object-store` feature: without it, a clear error.
#[cfg(not(feature = "object-store"))]
pub(crate) fn download(uri: &str, _local: &Path) -> Result<(), StepError> {
    Err(disabled(uri))
}

/// Asking for an object's size needs the `object-store` feature: without it, a clear error.
#[cfg(not(feature = "object-store"))]
pub(crate) fn size(uri: &str) -> Result<u64, StepError> {
    Err(disabled(uri))
}

#[cfg(not(feature = "object-store"))]
fn disabled(uri: &str) -> StepError {
    StepError::new(
        pipeline_core::ErrorKind::Setup,
        format!(
            "`{uri}` is in object storage, which this build leaves out: enable pipeline-runtime's `object-store` feature"
        ),
    )
}

#[cfg(feature = "object-store")]
mod client {
    use futures_util::StreamExt;
    use object_store::path::Path as StorePath;
    use object_store::{ObjectStore, WriteMultipart};
    use pipeline_core::{ErrorKind, StepError};
    use std::future::Future;
    use std::io::{Read, Write};
    use std::path::Path;
    use std::sync::OnceLock;

    /// Bytes per uploaded part.
    const PART: usize = 8 << 20;

    fn error(uri: &str, what: &str, e: impl std::fmt::Display) -> StepError {
        StepError::new(ErrorKind::Codec, format!("{what} `{uri}`: {e}"))
    }

    fn store(uri: &str) -> Result<(Box<dyn ObjectStore>, StorePath), StepError> {
        let url = url::Url::parse(uri).map_err(|e| error(uri, "not a URL", e))?;
        let options = std::env::vars()
            .filter(|(k, _)| ["AWS_", "GOOGLE_", "AZURE_"].iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.to_ascii_lowercase(), v));
        object_store::parse_url_opts(&url, options).map_err(|e| error(uri, "no object store for", e))
    }

    /// Runs `future` on a small runtime of this module's own, from any thread (inside another
    /// runtime or not), and waits for it.
    fn block<T: Send + 'static>(
        future: impl Future<Output = Result<T, StepError>> + Send + 'static,
    ) -> Result<T, StepError> {
        static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        let runtime = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("pipeline-object-store")
                .enable_all()
                .build()
                .expect("a runtime for object storage")
        });
        crate::sync::wait_on(runtime.handle(), future)
            .unwrap_or_else(|e| Err(StepError::new(ErrorKind::Codec, format!("object storage: {e}"))))
    }

    /// Uploads the local file `local` to `uri`, in parts.
    pub(crate) fn upload(local: &Path, uri: &str) -> Result<(), StepError> {
        let (store, path) = store(uri)?;
        let mut file = std::fs::File::open(local).map_err(|e| error(uri, "cannot read the file for", e))?;
        let uri = uri.to_string();
        block(async move {
            let upload = store
                .put_multipart(&path)
                .await
                .map_err(|e| error(&uri, "cannot upload to", e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| error(&uri, "cannot read the file for", e))?;
                if n == 0 {
                    break;
                }
                writer
                    .wait_for_capacity(4)
                    .await
                    .map_err(|e| error(&uri, "cannot upload to", e))?;
                writer.write(&buf[..n]);
            }
            writer
                .finish()
                .await
                .map(drop)
                .map_err(|e| error(&uri, "cannot upload to", e))
        })
    }

    /// The size of the object at `uri`; an error when there is none.
    pub(crate) fn size(uri: &str) -> Result<u64, StepError> {
        let (store, path) = store(uri)?;
        let owned = uri.to_string();
        block(async move {
            store
                .head(&path)
                .await
                .map(|meta| meta.size)
                .map_err(|e| error(&owned, "cannot find", e))
        })
    }

    /// Downloads `uri` into the local file `local` (through a temporary file, renamed at the end).
    pub(crate) fn download(uri: &str, local: &Path) -> Result<(), StepError> {
        let (store, path) = store(uri)?;
        if let Some(parent) = local.parent() {
            std::fs::create_dir_all(parent).map_err(|e| error(uri, "cannot create the folder for", e))?;
        }
        let tmp = local.with_extension(format!("download-{}", std::process::id()));
        let mut file = std::fs::File::create(&tmp).map_err(|e| error(uri, "cannot create the file for", e))?;
        let owned = uri.to_string();
        let outcome = block(async move {
            let got = store
                .get(&path)
                .await
                .map_err(|e| error(&owned, "cannot download", e))?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| error(&owned, "cannot download", e))?;
                file.write_all(&chunk)
                    .map_err(|e| error(&owned, "cannot write the download of", e))?;
            }
            Ok(())
        });
        match outcome {
            Ok(()) => std::fs::rename(&tmp, local).map_err(|e| error(uri, "cannot move the download of", e)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// Joins a URI prefix and relative parts with `/`.
pub(crate) fn join(prefix: &str, parts: &[&str]) -> String {
    let mut uri = prefix.trim_end_matches('/').to_string();
    for part in parts {
        uri.push('/');
        uri.push_str(part.trim_matches('/'));
    }
    uri
}
