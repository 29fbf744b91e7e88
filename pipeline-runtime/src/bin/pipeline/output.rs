//! Writing to standard output: whole texts, JSON values and streamed bytes, with a closed
//! pipe ending the command quietly instead of panicking.

use crate::error::CliError;
use std::io::Write;

/// Writes `text` to standard output.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::stdout(&e))
}

/// Writes `value` as pretty JSON and a newline.
pub fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failure(format!("cannot encode the output as JSON: {e}")))?;
    print(&format!("{text}\n"))
}

/// Writes raw bytes (log contents) to standard output.
pub fn print_bytes(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::stdout(&e))
}
