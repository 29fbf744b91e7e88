//! `pipeline get RUN [STEP [OUTPUT]]`: the value of a step's output (or, without a step, of
//! the run's `return_value`), read from its artifact after checking it; shown when its codec is
//! self-describing (JSON).

use crate::context::{Ctx, find_run, find_step};
use crate::error::CliError;
use crate::format::size;
use crate::output::{print, print_json};
use pipeline_runtime::artifacts::read_payload_at;
use pipeline_runtime::store::{ArtifactKind, ArtifactRecord, RunRecord};
use std::path::Path;

/// The codec whose payloads `get` can show without the Rust type.
const SELF_DESCRIBING: &str = "json";

/// Prints an output's value.
pub fn get(ctx: &Ctx, id: &str, step: Option<&str>, output: Option<&str>) -> Result<(), CliError> {
    let store = ctx.require_store()?;
    let run = find_run(&store, id)?;
    // The run's own output (`return_value`) is recorded under no step.
    let node = step.unwrap_or("");
    let artifacts: Vec<ArtifactRecord> = store
        .artifacts(&run.id)?
        .into_iter()
        .filter(|a| a.node == node && a.kind == ArtifactKind::Output)
        .collect();
    let artifact = match step {
        Some(step) => {
            let nodes = store.nodes(&run.id)?;
            let found = find_step(&nodes, &run, step)?;
            choose(&run, step, found.node.status.as_str(), &artifacts, output)?
        }
        None => artifacts.first().ok_or_else(|| {
            CliError::not_found(format!(
                "run {} recorded no return value (a pipeline records one with `return_value = \"NAME\"`); \
                 name a step: `pipeline get RUN STEP`",
                run.id
            ))
        })?,
    };
    let step = if node.is_empty() { "(the run)" } else { node };
    let path = Path::new(&artifact.uri);
    let (header, payload) = read_payload_at(&artifact.uri).map_err(|e| {
        CliError::failure(format!(
            "output `{}` of step `{step}` cannot be read ({}): {e}",
            artifact.name,
            path.display()
        ))
    })?;
    let in_file = format!("{:08x}", header.checksum);
    if let Some(recorded) = artifact.checksum.as_deref().filter(|c| *c != in_file) {
        return Err(CliError::failure(format!(
            "artifact {} changed after the run: the run store recorded checksum {recorded}, the file has {in_file}",
            path.display()
        )));
    }
    if header.codec != SELF_DESCRIBING {
        return Err(CliError::failure(format!(
            "output `{}` of step `{step}` is encoded with `{}`, which is not self-describing, so it cannot be shown \
             without its Rust type (artifact {}, type {}, size {}); pipelines with artifact_codec = \"json\" can be read here",
            artifact.name,
            header.codec,
            path.display(),
            header.type_name,
            size(header.length)
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&payload).map_err(|e| {
        CliError::failure(format!(
            "artifact {} says it holds JSON but does not parse as JSON: {e}",
            path.display()
        ))
    })?;
    if ctx.json {
        return print_json(&serde_json::json!({
            "run": run.id,
            "step": (!node.is_empty()).then_some(node),
            "output": artifact.name,
            "type": header.type_name,
            "codec": header.codec,
            "size": header.length,
            "checksum": in_file,
            "uri": artifact.uri,
            "value": value,
        }));
    }
    let text =
        serde_json::to_string_pretty(&value).map_err(|e| CliError::failure(format!("cannot format the value: {e}")))?;
    print(&format!("{text}\n"))
}

/// The artifact of the output asked for, or the only output when none was named.
fn choose<'a>(
    run: &RunRecord,
    step: &str,
    status: &str,
    artifacts: &'a [ArtifactRecord],
    output: Option<&str>,
) -> Result<&'a ArtifactRecord, CliError> {
    let names = || artifacts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ");
    if artifacts.is_empty() {
        return Err(CliError::not_found(if run.mode == "debug" {
            format!(
                "step `{step}` has no stored outputs: run {} ran in debug mode, where values stay in memory \
                 (run_locally() keeps them as artifacts)",
                run.id
            )
        } else {
            format!("step `{step}` of run {} has no stored outputs (it is {status})", run.id)
        }));
    }
    match output {
        Some(name) => artifacts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| CliError::not_found(format!("step `{step}` has no output `{name}` (outputs: {})", names()))),
        None if artifacts.len() == 1 => Ok(&artifacts[0]),
        None => Err(CliError::usage(format!(
            "step `{step}` has several outputs ({}): name one, as in `pipeline get RUN {step} OUTPUT`",
            names()
        ))),
    }
}
