//! `pipeline spin RUN STEP [--out DIR]`: runs one step of a recorded run again, alone, on the
//! inputs its last attempt had; prints its log and its outputs (their values when the codec is
//! JSON). The recorded run is not touched; the step's current code runs.

use crate::context::{Ctx, find_run, find_step};
use crate::error::CliError;
use crate::format::size;
use crate::output::{print, print_json};
use pipeline_runtime::artifacts::read_payload;
use std::path::PathBuf;

/// Runs the step again and reports what it gave.
pub fn spin(ctx: &Ctx, id: &str, step: &str, out: Option<PathBuf>) -> Result<(), CliError> {
    let store = ctx.require_store()?;
    let run = find_run(&store, id)?;
    let nodes = store.nodes(&run.id)?;
    let node = find_step(&nodes, &run, step)?.clone();
    drop(store);
    let keep = out.is_some();
    let out = out.unwrap_or_else(|| std::env::temp_dir().join(format!("pipeline-spin-{}", std::process::id())));
    let spun = pipeline_runtime::spin_step(&ctx.state, &run, &node, &out).map_err(|e| CliError::failure(e.to_string()));
    let report = spun.and_then(|spun| report(ctx, &run.id, step, &spun, keep.then_some(&out)));
    if !keep {
        let _ = std::fs::remove_dir_all(&out);
    }
    report
}

fn report(
    ctx: &Ctx,
    run: &str,
    step: &str,
    spun: &pipeline_runtime::Spun,
    kept: Option<&PathBuf>,
) -> Result<(), CliError> {
    let log = std::fs::read(&spun.log).unwrap_or_default();
    let mut outputs = Vec::new();
    for (name, artifact) in &spun.outputs {
        let (header, payload) = read_payload(&artifact.path)
            .map_err(|e| CliError::failure(format!("output `{name}` cannot be read: {e}")))?;
        let value = (header.codec == "json")
            .then(|| serde_json::from_slice::<serde_json::Value>(&payload).ok())
            .flatten();
        outputs.push((name, header, value));
    }
    if ctx.json {
        return print_json(&serde_json::json!({
            "run": run,
            "step": step,
            "error": spun.error,
            "log": String::from_utf8_lossy(&log),
            "outputs": outputs.iter().map(|(name, header, value)| serde_json::json!({
                "name": name,
                "type": header.type_name,
                "codec": header.codec,
                "size": header.length,
                "value": value,
            })).collect::<Vec<_>>(),
            "folder": kept,
        }));
    }
    let mut text = String::new();
    if !log.is_empty() {
        text.push_str(&format!("log of `{step}`:\n{}", String::from_utf8_lossy(&log)));
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    for (name, header, value) in &outputs {
        match value {
            Some(value) => text.push_str(&format!(
                "{name} = {}\n",
                serde_json::to_string_pretty(value).unwrap_or_default()
            )),
            None => text.push_str(&format!(
                "{name}: a {} of {} ({} codec: not shown without its Rust type)\n",
                header.type_name,
                size(header.length),
                header.codec
            )),
        }
    }
    if let Some(folder) = kept {
        text.push_str(&format!("outputs, result and log are in {}\n", folder.display()));
    }
    print(&text)?;
    match &spun.error {
        Some(error) => Err(CliError::failure(format!("step `{step}` failed again: {error}"))),
        None => Ok(()),
    }
}
