//! Launcher pool (see run_cmd).
