//! `slipway __exec-init`: the sandbox helper `exec::EmbeddedExecutor` re-executes. Hidden from
//! `--help`; its protocol (config on stdin, reports on `--report-fd`) is private to `exec`.

/// Runs the helper; its exit code only matters when it could not report.
pub fn exec_init(report_fd: i32) -> u8 {
    crate::exec::helper_main(report_fd)
}
