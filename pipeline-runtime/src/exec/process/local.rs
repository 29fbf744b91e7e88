//! `run_locally()`: every step runs as a subprocess of this same executable, as many at once
//! as the DAG and the concurrency limit allow.

use super::{Backend, Ended, LogSink, WorkerJob, unless_stopped};
use crate::exec::Cancel;
use crate::worker::MANIFEST_ENV;
use pipeline_core::{ErrorKind, StepError};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Starts workers as child processes.
pub(crate) struct LocalBackend {
    exe: PathBuf,
}

impl LocalBackend {
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {
            exe: std::env::current_exe()?,
        })
    }
}

impl Backend for LocalBackend {
    async fn execute(
        &self,
        job: &WorkerJob<'_>,
        log: &LogSink,
        cancel: &Cancel,
        limit: Option<Duration>,
    ) -> Result<Ended, StepError> {
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .env(MANIFEST_ENV, job.manifest_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        crate::os::own_group(&mut command);
        let mut child = command.spawn().map_err(|e| {
            StepError::new(
                ErrorKind::Setup,
                format!("cannot start a worker from `{}`: {e}", self.exe.display()),
            )
        })?;
        // Whatever happens from here on (an end, a stop, this future dropped), the worker's
        // group ends with the attempt: nothing the step started outlives it.
        let group = Group::new(child.id());
        let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let pumps = async { tokio::join!(pump(stdout, log), pump(stderr, log)) };
        let (ended, group_ended) = tokio::sync::oneshot::channel::<()>();
        let waiting = async {
            let waited = unless_stopped(child.wait(), cancel, limit).await;
            // Ended or stopped, the worker's group goes: what the step started goes with it.
            group.kill();
            if waited.is_err() {
                let _ = child.wait().await;
            }
            let _ = ended.send(());
            waited
        };
        let pumping = async {
            tokio::select! {
                _ = pumps => true,
                // Only a program that left the worker's group can still hold the pipes open.
                () = async {
                    let _ = group_ended.await;
                    tokio::time::sleep(PIPE_GRACE).await;
                } => false,
            }
        };
        let (waited, pumped) = tokio::join!(waiting, pumping);
        if !pumped {
            log.end_line(
                b"pipeline: the step ended, but a program it started outside its process group still holds its output open; the rest is not logged",
                0,
            );
        }
        Ok(match waited {
            Err(reason) => Ended::Stopped(reason),
            Ok(status) => {
                let status =
                    status.map_err(|e| StepError::new(ErrorKind::Setup, format!("cannot wait for the worker: {e}")))?;
                Ended::Exited {
                    success: status.success(),
                    how: describe_exit(&status),
                    signalled: std::os::unix::process::ExitStatusExt::signal(&status).is_some(),
                }
            }
        })
    }
}

/// Forwards a worker's output to its log as bytes, line by line. Invalid UTF-8 is kept (shown
/// lossily), and a line longer than [`SPILL`] goes to the file in pieces instead of being held
/// whole, so no output can stop the pump (and the worker with it, on a closed pipe).
async fn pump(stream: impl AsyncRead + Unpin, log: &LogSink) {
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut line = Vec::new();
    let mut spilled = 0u64;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) if !chunk.is_empty() => chunk,
            _ => break,
        };
        let (taken, ended) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (chunk.len(), false),
        };
        line.extend_from_slice(&chunk[..taken - usize::from(ended)]);
        reader.consume(taken);
        if ended {
            log.end_line(&line, spilled);
            line.clear();
            spilled = 0;
        } else if line.len() >= SPILL {
            log.spill(&line, spilled == 0);
            spilled += line.len() as u64;
            line.clear();
        }
    }
    if !line.is_empty() || spilled > 0 {
        log.end_line(&line, spilled);
    }
}

/// How long the log pipes may stay open after a step's process group has ended.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// A worker's process group (see [`crate::os`]), ended at the latest when the attempt is.
struct Group {
    id: Option<u32>,
    /// Ended already: a group id is not signalled twice, since once the group is gone its id
    /// may come back as another process's.
    ended: std::sync::atomic::AtomicBool,
}

impl Group {
    fn new(id: Option<u32>) -> Self {
        Self {
            id,
            ended: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Ends the group now, unless it was ended before.
    fn kill(&self) {
        if let Some(id) = self
            .id
            .filter(|_| !self.ended.swap(true, std::sync::atomic::Ordering::Relaxed))
        {
            crate::os::kill_group(id);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The most of one output line held in memory before it is written out in pieces.
const SPILL: usize = 1 << 20;

fn describe_exit(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("was killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with code {code} without reporting a result"),
        None => "ended without an exit code".to_string(),
    }
}
