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
    ray: Option<RayConfig>,
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
    Layer {
        mode: file.mode,
        state_dir: env(STATE_DIR_ENV)
            .map(PathBuf::from)
            .or_else(|| file.state_dir.map(|d| cwd.join(d))),
        recording: env(RECORD_ENV).map(|v| v != "0").or(file.record),
        default_queue: file.default_queue,
        busy_timeout: file.busy_timeout,
        ray: Some(RayConfig {
            address: env(RAY_ADDRESS_ENV).or(ray.address),
            token: env(RAY_TOKEN_ENV).or(ray.token),
            headers: ray.headers,
        }),
        run_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_sets_every_field_and_rejects_unknown_keys() {
        let file = parse(
            "mode = \"local\"\nstate_dir = \"runs/here\"\nrecord = false\ndefault_queue = \"gpu\"\n\
             busy_timeout = \"1s 500ms\"\n[ray]\naddress = \"http://ray:8265\"\n",
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
    }
}
