//! The scrub's lines in `/metrics`: objects and bytes verified, damage
//! known, the last pass and the progress of the one under way.

use std::fmt::Write as _;

use super::Status;

impl Status {
    pub(crate) fn render_metrics(&self, out: &mut String) {
        let state = self.state.borrow();
        let progress = state.pass.as_ref().map_or(0.0, |pass| {
            pass.counts.bytes as f64 / pass.total_bytes.max(1) as f64
        });
        let last = state.last.map_or(0, |last| last.finished);
        let metrics: [(&str, &str, &str, String); 5] = [
            (
                "rest_server_scrub_verified_objects_total",
                "Objects read and hashed by the scrub since the server started.",
                "counter",
                self.verified_objects.get().to_string(),
            ),
            (
                "rest_server_scrub_verified_bytes_total",
                "Bytes read and hashed by the scrub since the server started.",
                "counter",
                self.verified_bytes.get().to_string(),
            ),
            (
                "rest_server_scrub_damaged_objects",
                "Objects that did not match their names or could not be read, not yet repaired or deleted.",
                "gauge",
                state.damaged.len().to_string(),
            ),
            (
                "rest_server_scrub_last_pass_finished_timestamp_seconds",
                "When the last full scrub pass finished (Unix time); 0 before the first.",
                "gauge",
                last.to_string(),
            ),
            (
                "rest_server_scrub_pass_progress_ratio",
                "How far the pass in progress is, by bytes stored when it started; 0 between passes.",
                "gauge",
                format!("{:.4}", progress.min(1.0)),
            ),
        ];
        for (name, help, kind, value) in metrics {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}
