//! Helpers the overhead benchmarks share.

use std::time::Duration;

/// The middle sample (the upper one of the two middles for an even count).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
