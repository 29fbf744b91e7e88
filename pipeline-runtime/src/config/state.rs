//! Where the framework keeps what it writes: the state folder.

use std::path::PathBuf;
use std::sync::RwLock;

/// The environment variable that moves the state folder.
pub const STATE_DIR_ENV: &str = "PIPELINE_STATE_DIR";

static OVERRIDE: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Moves the state folder for the pipelines started from now on (tests point it at a
/// temporary folder this way); `None` goes back to the default.
pub fn set_state_dir(dir: Option<PathBuf>) {
    *OVERRIDE.write().unwrap_or_else(|p| p.into_inner()) = dir;
}

/// The configuration file read from the working directory.
pub const CONFIG_FILE: &str = "pipeline.toml";

/// The state folder, from the first of: [`set_state_dir`], `$PIPELINE_STATE_DIR`,
/// `state_dir = "..."` in `pipeline.toml` in the working directory (relative to that folder),
/// and `.pipeline` in the working directory.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = OVERRIDE.read().unwrap_or_else(|p| p.into_inner()).clone() {
        return dir;
    }
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match std::fs::read_to_string(cwd.join(CONFIG_FILE)) {
        Ok(text) => match state_dir_from_config(&text) {
            Ok(Some(dir)) => cwd.join(dir),
            Ok(None) => cwd.join(".pipeline"),
            Err(e) => {
                crate::diag::warn(format_args!("ignoring {CONFIG_FILE}: {e}"));
                cwd.join(".pipeline")
            }
        },
        Err(_) => cwd.join(".pipeline"),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    state_dir: Option<PathBuf>,
    ray: Option<super::RayConfig>,
}

fn read_config(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

fn state_dir_from_config(text: &str) -> Result<Option<PathBuf>, String> {
    Ok(read_config(text)?.state_dir)
}

/// The environment variable with the Ray dashboard's address.
pub const RAY_ADDRESS_ENV: &str = "PIPELINE_RAY_ADDRESS";
/// The environment variable with a bearer token for the Ray cluster.
pub const RAY_TOKEN_ENV: &str = "PIPELINE_RAY_TOKEN";

/// The Ray cluster to use: `[ray]` in `pipeline.toml` (`address`, `token`, `headers`), with
/// `$PIPELINE_RAY_ADDRESS` and `$PIPELINE_RAY_TOKEN` taking precedence.
pub fn ray_config() -> super::RayConfig {
    let file = std::env::current_dir()
        .ok()
        .and_then(|cwd| std::fs::read_to_string(cwd.join(CONFIG_FILE)).ok())
        .and_then(|text| read_config(&text).ok())
        .and_then(|c| c.ray)
        .unwrap_or_default();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    super::RayConfig {
        address: env(RAY_ADDRESS_ENV).or(file.address),
        token: env(RAY_TOKEN_ENV).or(file.token),
        headers: file.headers,
    }
}

static RECORDING: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Turns recording into the run store on or off for the pipelines started from now on
/// (default: on, unless `PIPELINE_RECORD=0`).
pub fn set_recording(on: bool) {
    RECORDING.store(if on { 1 } else { 2 }, std::sync::atomic::Ordering::Relaxed);
}

/// Whether pipelines started now are recorded.
pub fn recording() -> bool {
    match RECORDING.load(std::sync::atomic::Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => std::env::var("PIPELINE_RECORD").map_or(true, |v| v != "0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_names_the_state_folder_and_rejects_unknown_keys() {
        assert_eq!(
            state_dir_from_config("state_dir = \"runs/here\"").unwrap(),
            Some(PathBuf::from("runs/here"))
        );
        assert_eq!(state_dir_from_config("").unwrap(), None);
        assert!(
            state_dir_from_config("state_dri = \"x\"")
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
