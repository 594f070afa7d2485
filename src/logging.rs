//! The server log on stderr: info by default, debug with `--debug`.

use simplelog::{ColorChoice, ConfigBuilder, LevelFilter, TermLogger, TerminalMode};

pub fn init(debug: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let config = ConfigBuilder::new()
        .add_filter_allow_str("rest_server")
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .build();
    // Only fails if a logger is set already, which is harmless.
    let _ = TermLogger::init(level, config, TerminalMode::Stderr, ColorChoice::Never);
}
