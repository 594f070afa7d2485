//! `rest-server scrub --status`: the state file, as text for people.

use std::fmt::Write as _;

use crate::time::utc;

use super::state::Files;

/// `rest-server scrub --status`: the state file, for people; and whether
/// damaged objects are known.
pub(crate) fn status_report(files: &Files) -> Result<(String, bool), String> {
    let state = files.read()?;
    let now = crate::time::unix_now();
    let mut out = String::new();
    match &state.last {
        Some(last) => {
            let _ = writeln!(
                out,
                "last pass: finished {} ({} ago), {} objects, {} bytes verified in {} s, {} damaged",
                utc(last.finished),
                crate::time::duration(now.saturating_sub(last.finished)),
                last.counts.objects,
                last.counts.bytes,
                last.finished.saturating_sub(last.started),
                last.counts.damaged
            );
        }
        None => out.push_str("last pass: none finished yet\n"),
    }
    if let Some(pass) = &state.pass {
        let _ = writeln!(
            out,
            "pass in progress: started {}, {} of {} bytes ({:.0}%), {} objects verified{}",
            utc(pass.started),
            pass.counts.bytes,
            pass.total_bytes,
            pass.counts.bytes as f64 * 100.0 / pass.total_bytes.max(1) as f64,
            pass.counts.objects,
            pass.at
                .as_ref()
                .map_or(String::new(), |at| format!(", last {at}"))
        );
    }
    if state.damaged.is_empty() {
        out.push_str("damaged objects: none known\n");
    } else {
        let _ = writeln!(out, "damaged objects: {}", state.damaged.len());
        for d in &state.damaged {
            let _ = writeln!(out, "  {}: {} (found {})", d.place, d.what, utc(d.found));
        }
    }
    let _ = writeln!(out, "(from {})", files.path().display());
    Ok((out, !state.damaged.is_empty()))
}
