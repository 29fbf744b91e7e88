//! Entry points for the fuzz targets under `fuzz/`: each reads arbitrary bytes the way the
//! runtime reads the files of a run (artifacts, manifests, worker results). Whatever the bytes,
//! they may only return errors: a panic or an abort is a finding. Not a public API.

use crate::transport::artifacts::{self, ArtifactRef};
use crate::worker::{Manifest, WorkerResult};
use pipeline_core::Codec;
use std::path::PathBuf;

/// Types whose decoding exercises every shape the built-in codecs have: strings and byte
/// buffers (the decoder's only up-front claims), sequences, options, maps, floats, enums.
type Shapes = (
    Vec<String>,
    Vec<u8>,
    Option<f64>,
    std::collections::BTreeMap<String, Vec<u64>>,
);

#[derive(serde::Serialize, serde::Deserialize)]
enum Choice {
    Unit,
    Text(String),
    Pair(u32, Vec<i64>),
}

fn decode_all(codec: Codec, bytes: &[u8]) {
    let length = bytes.len() as u64;
    let _ = pipeline_core::codec::decode_from::<Shapes>(codec, &mut { bytes }, length);
    let _ = pipeline_core::codec::decode_from::<Vec<Choice>>(codec, &mut { bytes }, length);
    let _ = pipeline_core::codec::decode_from::<String>(codec, &mut { bytes }, length);
}

/// A value's encoded bytes, decoded with each built-in codec as several types, with the bound a
/// reader gives them (the payload's length).
pub fn payload(bytes: &[u8]) {
    decode_all(Codec::Bincode, bytes);
    decode_all(Codec::Json, bytes);
    if let Ok(value) = pipeline_core::codec::decode::<Shapes>(bytes) {
        // What decodes re-encodes.
        pipeline_core::codec::encode(&value).expect("a decoded value encodes");
    }
}

/// An artifact file's bytes: its header alone, header and checked payload, a value of a few
/// types, and a fan-in of two such files.
pub fn artifact(bytes: &[u8]) {
    let path = scratch("artifact");
    std::fs::write(&path, bytes).expect("the fuzz scratch file is writable");
    let _ = artifacts::read_header(&path);
    let _ = artifacts::read_payload(&path);
    for codec in [Codec::Bincode, Codec::Json] {
        let artifact = ArtifactRef::local(path.clone(), codec);
        let _ = artifacts::read_value::<Shapes>(&artifact);
        let _ = artifacts::read_value::<String>(&artifact);
        let paths = [path.clone(), path.clone()];
        let _ = artifacts::read_elements(&paths, codec, std::any::type_name::<Vec<String>>(), &mut |r, length| {
            pipeline_core::codec::decode_from::<Vec<String>>(codec, r, length).map(drop)
        });
        // A reader that stops early must not confuse the checks either.
        let _ = artifacts::read_with(&path, codec, std::any::type_name::<String>(), &mut |r, _| {
            let mut first = [0u8; 3];
            let _ = r.read(&mut first);
            Ok(())
        });
    }
}

/// A worker manifest's bytes, as a worker reads them.
pub fn manifest(bytes: &[u8]) {
    if let Ok(manifest) = serde_json::from_slice::<Manifest>(bytes) {
        let _ = serde_json::to_vec(&manifest);
    }
}

/// A run's node log in the run store (`store::node_log`), as its readers fold it.
pub fn node_log(bytes: &[u8]) {
    crate::store::fold_for_fuzzing(bytes);
}

/// A worker result file's bytes, as the controller reads them.
pub fn worker_result(bytes: &[u8]) {
    if let Ok(result) = serde_json::from_slice::<WorkerResult>(bytes) {
        let _ = serde_json::to_vec(&result);
    }
}

/// Valid inputs for each target, to start its corpus from: `(target, name, bytes)`.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let shapes: Shapes = (
        vec!["alpha".into(), String::new()],
        vec![0, 1, 255],
        Some(1.5),
        [("k".to_string(), vec![1, u64::MAX])].into_iter().collect(),
    );
    let choices = vec![Choice::Unit, Choice::Text("t".into()), Choice::Pair(7, vec![-1, 2])];
    let mut seeds = Vec::new();
    for (codec, name) in [(Codec::Bincode, "bincode"), (Codec::Json, "json")] {
        let mut bytes = Vec::new();
        pipeline_core::codec::encode_into(codec, &shapes, &mut bytes).expect("seeds encode");
        seeds.push(("payload", name, bytes));
        let mut bytes = Vec::new();
        pipeline_core::codec::encode_into(codec, &choices, &mut bytes).expect("seeds encode");
        seeds.push((
            "payload",
            if name == "json" { "json-enum" } else { "bincode-enum" },
            bytes,
        ));
        let path = scratch(&format!("seed-{name}"));
        artifacts::write_value(&path, codec, &shapes).expect("seeds are written");
        seeds.push(("artifact", name, std::fs::read(&path).expect("seeds are read")));
        let _ = std::fs::remove_file(&path);
    }
    let artifact = |path: &str| crate::worker::ManifestArtifact {
        path: path.into(),
        uri: None,
    };
    let manifest = Manifest {
        pipeline: "p".into(),
        component: "c".into(),
        code_hash: "0123".into(),
        codec: "bincode".into(),
        inputs: vec![
            crate::worker::ManifestInput::Artifact(artifact("in/a.art")),
            crate::worker::ManifestInput::Elements(vec![artifact("in/b.art"), artifact("in/c.art")]),
        ],
        outputs: vec!["out/x.art".into()],
        result: "result.json".into(),
        context: None,
        output_uris: vec![Some("s3://bucket/x".into())],
        result_uri: None,
        state_dir: None,
        spin: false,
        scratch: None,
    };
    seeds.push((
        "manifest",
        "two-inputs",
        serde_json::to_vec(&manifest).expect("seeds encode"),
    ));
    let failed = WorkerResult {
        error: Some(pipeline_core::StepError::new(pipeline_core::ErrorKind::Error, "boom")),
        outputs: Vec::new(),
        reports: vec![crate::step::Report::Text {
            node: "n".into(),
            text: "t".into(),
        }],
    };
    let succeeded = WorkerResult {
        error: None,
        outputs: vec![Some(crate::worker::OutputMeta {
            type_name: "u64".into(),
            length: 1,
            checksum: 7,
        })],
        reports: Vec::new(),
    };
    seeds.push((
        "worker_result",
        "failed",
        serde_json::to_vec(&failed).expect("seeds encode"),
    ));
    seeds.push((
        "worker_result",
        "succeeded",
        serde_json::to_vec(&succeeded).expect("seeds encode"),
    ));
    seeds
}

/// A file of this process's own for one target.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pipeline-fuzz-{}-{name}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed goes through its target, and the valid ones read back. With
    /// `PIPELINE_FUZZ_SEEDS=<dir>` the seeds are also written there (`fuzz/seeds` is made so).
    #[test]
    fn seeds_pass_through_their_targets() {
        let out = std::env::var_os("PIPELINE_FUZZ_SEEDS").map(PathBuf::from);
        for (target, name, bytes) in seeds() {
            match target {
                "payload" => payload(&bytes),
                "artifact" => {
                    artifact(&bytes);
                    let path = scratch("seed-check");
                    std::fs::write(&path, &bytes).unwrap();
                    let codec = if name == "json" { Codec::Json } else { Codec::Bincode };
                    let shapes = artifacts::read_value::<Shapes>(&ArtifactRef::local(path.clone(), codec)).unwrap();
                    assert_eq!(shapes.0[0], "alpha");
                    let _ = std::fs::remove_file(&path);
                }
                "manifest" => {
                    manifest(&bytes);
                    serde_json::from_slice::<Manifest>(&bytes).unwrap();
                }
                "worker_result" => {
                    worker_result(&bytes);
                    serde_json::from_slice::<WorkerResult>(&bytes).unwrap();
                }
                other => panic!("unknown target {other}"),
            }
            if let Some(out) = &out {
                let dir = out.join(target);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(name), &bytes).unwrap();
            }
        }
    }
}
