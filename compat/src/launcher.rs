//! The conformance suite through a pool launcher (`skiff launcher`): each
//! job's output comes back in memory files passed with the request.

use std::os::fd::AsFd;

use runtime::job::JobSpec;
use runtime::pool::{Launcher, Reply, Request, Sink};

use crate::conformance::{self, Launch, Outcome};

/// Runs each job in the launcher, capturing output in memory files whose
/// descriptors go with the request.
impl Launch for Launcher {
    fn launch(&mut self, image: &str, job: &JobSpec) -> std::result::Result<Outcome, String> {
        let mut out = conformance::capture_file("skiff-stdout").map_err(|e| e.to_string())?;
        let mut err = conformance::capture_file("skiff-stderr").map_err(|e| e.to_string())?;
        let req = Request {
            image: image.to_string(),
            job: job.clone(),
            runtime: self.runtime().map(str::to_string),
            stdout: Some(Sink::Fd(0)),
            stderr: Some(Sink::Fd(1)),
            output_cap: Some(conformance::OUTPUT_CAP),
        };
        let reply = self
            .request_with_fds(&req, &[out.as_fd(), err.as_fd()])
            .map_err(|e| e.to_string())?;
        match reply {
            Reply::Ok(result) => Ok(Outcome {
                result,
                stdout: conformance::read_capture(&mut out),
                stderr: conformance::read_capture(&mut err),
            }),
            Reply::Error(e) => Ok(Outcome::failed(e)),
        }
    }
}
