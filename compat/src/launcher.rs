//! The conformance suite through a pool launcher (`skiff launcher`): each
//! job's output comes back in memory files passed with the request.

use std::os::fd::AsFd;

use runtime::job::JobSpec;
use runtime::pool::{Launcher, Reply, Request, Sink};

use crate::conformance::{self, Launch, LaunchError, Outcome};

/// Runs each job in the launcher, capturing output in memory files whose
/// descriptors go with the request.
impl Launch for Launcher {
    fn launch(&mut self, image: &str, job: &JobSpec) -> std::result::Result<Outcome, LaunchError> {
        let capture = |stream: &'static str| {
            conformance::capture_file(&format!("skiff-{stream}")).map_err(|e| {
                LaunchError::CreateCapture {
                    stream,
                    source: Box::new(e),
                }
            })
        };
        let mut out = capture("stdout")?;
        let mut err = capture("stderr")?;
        let req = Request {
            image: image.to_string(),
            job: job.clone(),
            runtime: self.runtime().map(str::to_string),
            stdout: Some(Sink::Fd(0)),
            stderr: Some(Sink::Fd(1)),
            output_cap: Some(conformance::OUTPUT_CAP),
            warm: self.warm_policy(),
            fd_volumes: Vec::new(),
            reply_before_cleanup: false,
        };
        let reply = self
            .request_with_fds(&req, &[out.as_fd(), err.as_fd()])
            .map_err(|e| LaunchError::Request(Box::new(e)))?;
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
