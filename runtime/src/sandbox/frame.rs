//! The one message a launcher sends a waiting sandbox: the job's argv, env
//! and working directory, with its stdin, stdout and stderr attached by
//! `SCM_RIGHTS` to the first bytes.
//!
//! ```text
//! u32 LE  body length (at most MAX_FRAME_BYTES)
//! body    u32 LE argc, u32 LE envc, then argc + envc + 1 strings, each
//!         NUL-terminated: argv, env, cwd
//! ```
//!
//! The parser runs in the sandbox's init, under the job's seccomp filter,
//! capabilities and `no_new_privs`: nothing in a frame can change those; a
//! malformed frame only ends the sandbox (exit 126, message on its stderr).

/// The largest body: 1 MiB, as a pool request line.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// A job as the sandbox receives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobFrame {
    /// `argv`, non-empty.
    pub args: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its header or its counts say.
    #[error("job frame truncated")]
    Truncated,
    /// Longer than [`MAX_FRAME_BYTES`].
    #[error("job frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A string holds a NUL, is not UTF-8, or bytes follow the last one.
    #[error("job frame malformed: {0}")]
    Malformed(&'static str),
}

impl JobFrame {
    /// The wire form, header included.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut body = Vec::new();
        body.extend_from_slice(&(self.args.len() as u32).to_le_bytes());
        body.extend_from_slice(&(self.env.len() as u32).to_le_bytes());
        for s in self.args.iter().chain(&self.env).chain([&self.cwd]) {
            if s.as_bytes().contains(&0) {
                return Err(FrameError::Malformed("a string holds a NUL byte"));
            }
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
        if body.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(body.len()));
        }
        let mut out = (body.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The body length a header announces.
    pub fn body_len(header: [u8; 4]) -> Result<usize, FrameError> {
        let n = u32::from_le_bytes(header) as usize;
        if n > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(n));
        }
        Ok(n)
    }

    /// Parse a body (without its header).
    pub fn decode(body: &[u8]) -> Result<JobFrame, FrameError> {
        let count = |at: usize| -> Result<usize, FrameError> {
            let b = body.get(at..at + 4).ok_or(FrameError::Truncated)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        };
        let (argc, envc) = (count(0)?, count(4)?);
        // Each string takes at least its NUL: bound the counts by the body.
        if argc.saturating_add(envc).saturating_add(1) > body.len() {
            return Err(FrameError::Truncated);
        }
        let mut strings = body[8..].split(|b| *b == 0);
        let mut next = || -> Result<String, FrameError> {
            let s = strings.next().ok_or(FrameError::Truncated)?;
            String::from_utf8(s.to_vec())
                .map_err(|_| FrameError::Malformed("a string is not UTF-8"))
        };
        let args = (0..argc).map(|_| next()).collect::<Result<Vec<_>, _>>()?;
        let env = (0..envc).map(|_| next()).collect::<Result<Vec<_>, _>>()?;
        let cwd = next()?;
        if !body.ends_with(&[0]) || strings.next() != Some(&[][..]) || strings.next().is_some() {
            return Err(FrameError::Malformed("bytes after the last string"));
        }
        if args.is_empty() || args[0].is_empty() {
            return Err(FrameError::Malformed("no command"));
        }
        if !cwd.starts_with('/') {
            return Err(FrameError::Malformed("working directory not absolute"));
        }
        Ok(JobFrame { args, env, cwd })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JobFrame {
        JobFrame {
            args: vec!["sh".into(), "-c".into(), "echo ''".into()],
            env: vec!["PATH=/bin".into(), "EMPTY=".into()],
            cwd: "/tmp".into(),
        }
    }

    #[test]
    fn test_frame_round_trip() {
        let wire = sample().encode().expect("encode");
        let n = JobFrame::body_len(wire[..4].try_into().expect("header")).expect("len");
        assert_eq!(n, wire.len() - 4);
        assert_eq!(JobFrame::decode(&wire[4..]).expect("decode"), sample());
    }

    #[test]
    fn test_frame_refuses_malformed_bodies() {
        let wire = sample().encode().expect("encode");
        let body = &wire[4..];
        for cut in 0..body.len() {
            assert!(JobFrame::decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = body.to_vec();
        extra.extend_from_slice(b"x\0");
        assert!(JobFrame::decode(&extra).is_err());
        let mut huge = body.to_vec();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(JobFrame::decode(&huge), Err(FrameError::Truncated));
        let no_cmd = JobFrame {
            args: vec![],
            ..sample()
        };
        assert!(JobFrame::decode(&no_cmd.encode().expect("enc")[4..]).is_err());
        let nul = JobFrame {
            cwd: "/a\0b".into(),
            ..sample()
        };
        assert!(nul.encode().is_err());
        assert!(JobFrame::body_len(u32::MAX.to_le_bytes()).is_err());
    }
}
