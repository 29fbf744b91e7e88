//! The `--json` shapes of runs, steps and artifacts: lower-case states, RFC 3339 times,
//! durations in seconds, parameters as JSON values.

use crate::format::{parameter_value, rfc3339};
use pipeline_runtime::store::{ArtifactRecord, NodeRecord, RunRecord};
use pipeline_runtime::{NodeStatus, StepError};
use serde_json::{Map, Value, json};

/// A run's record.
pub fn run(r: &RunRecord) -> Value {
    let parameters: Map<String, Value> = r
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), parameter_value(v)))
        .collect();
    json!({
        "id": r.id,
        "project": r.project,
        "name": r.name,
        "version": r.version,
        "run_number": r.run_number,
        "status": r.status.as_str(),
        "mode": r.mode,
        "code_hash": r.code_hash,
        "parameters": parameters,
        "tags": r.tags,
        "configuration": r.configuration,
        "started": rfc3339(r.started),
        "ended": r.ended.map(rfc3339),
        "duration_s": r.elapsed().as_secs_f64(),
        "origin": r.origin,
        "parent": r.parent.as_ref().map(|(run, node)| json!({"run": run, "node": node})),
        "controller": r.controller.as_ref().map(|c| json!({"host": c.host, "pid": c.pid, "heartbeat": rfc3339(c.heartbeat)})),
    })
}

/// A step's record.
pub fn step(n: &NodeRecord) -> Value {
    let d = &n.node;
    json!({
        "name": d.name,
        "component": d.component,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "cache_hit": d.status == NodeStatus::Cached,
        "parents": d.parents,
        "started": d.started.map(rfc3339),
        "ended": d.ended.map(rfc3339),
        "duration_s": d.duration().map(|x| x.as_secs_f64()),
        "error": d.error.as_ref().map(error),
        "code_hash": n.code_hash,
        "task_type": n.task_type,
        "tags": n.tags,
        "cache_key": n.cache_key,
        "log_path": n.log_path,
    })
}

/// A step's failure.
pub fn error(e: &StepError) -> Value {
    json!({
        "kind": format!("{:?}", e.kind).to_lowercase(),
        "message": e.message,
        "causes": e.causes,
        "text": e.to_string(),
    })
}

/// An artifact's record.
pub fn artifact(a: &ArtifactRecord) -> Value {
    json!({
        "node": a.node,
        "name": a.name,
        "kind": a.kind.as_str(),
        "type": a.type_name,
        "codec": a.codec,
        "size": a.size,
        "checksum": a.checksum,
        "uri": a.uri,
        "metadata": a.metadata,
    })
}
