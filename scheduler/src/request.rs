//! A job as submitted through the API: what to run and how to schedule it,
//! parsed strictly (unknown fields refused) and validated field by field.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// Largest payload, in bytes (IronWorker allows 64 KB; skiff 1 MB).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Default and largest job timeout, in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 3600;
/// Largest timeout, in seconds (a day).
pub const MAX_TIMEOUT_S: u64 = 86_400;
/// Largest delay, in seconds (7 days, as IronWorker).
pub const MAX_DELAY_S: u64 = 7 * 86_400;
/// Largest `max_retries`.
pub const MAX_RETRIES: u32 = 25;
/// Largest items in a string list (command, env).
const MAX_LIST: usize = 4096;
/// Most volumes per job.
const MAX_VOLUMES: usize = 16;
/// Largest length of a name-like field (queue, label, idempotency key).
const MAX_NAME: usize = 256;

/// A memory size: bytes, or a string with a unit (`64m`, `1g`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(i64),
    /// With a unit, as `skiff run -m`.
    Text(String),
}

/// One job, as the API accepts it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// Image reference in the worker's store (tag, id or id prefix);
    /// or leave it out and name a code package.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// A code package (its base image plus its code layer) instead of an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Command and arguments (default: the image's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Extra environment, `NAME=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Host paths bind-mounted into the job, `HOST:CONTAINER[:ro|rw]` as
    /// `skiff run -v`; refused unless the worker allows the host directory
    /// (`skiff serve --allow-volume DIR`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Memory limit (no swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// CPU limit, in CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Process limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// Data for the job, read from the file named by `PAYLOAD_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Seconds before the job is stopped and its attempt ends in `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// 0, 1 or 2; higher runs first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Seconds to wait before the job may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<u64>,
    /// Attempts after the first one that fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Seconds before the first retry; doubled for each later one, with jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<u64>,
    /// Free-form label, for filtering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Queue name (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// A second submit with the same key returns the first job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// An `http` or `https` URL POSTed the job (JSON) when it ends,
    /// retried with backoff until it answers 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// A [`JobRequest`] whose fields have been checked, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidJob {
    /// The request as given (payload still inside).
    pub request: JobRequest,
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// Timeout in milliseconds.
    pub timeout_ms: i64,
    /// Priority 0–2.
    pub priority: i64,
    /// Delay in milliseconds.
    pub delay_ms: i64,
    /// Retries allowed.
    pub max_retries: i64,
    /// First retry delay in milliseconds.
    pub retry_delay_ms: i64,
    /// Queue name.
    pub queue: String,
    /// The volumes, parsed (not yet checked against the worker's allowed
    /// directories: [`crate::volumes::AllowedVolumes`]).
    pub volumes: Vec<runtime::job::Volume>,
}

fn name_field(field: &'static str, v: &Option<String>) -> Result<(), FieldError> {
    if let Some(v) = v {
        if v.is_empty() || v.len() > MAX_NAME || v.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                format!("must be 1–{MAX_NAME} characters without control characters"),
            ));
        }
    }
    Ok(())
}

fn list_field(field: &'static str, v: &[String]) -> Result<(), FieldError> {
    if v.len() > MAX_LIST {
        return Err(FieldError::new(field, format!("at most {MAX_LIST} items")));
    }
    if let Some(i) = v.iter().position(|s| s.contains('\0')) {
        return Err(FieldError::new(
            field,
            format!("item {i} contains a NUL byte"),
        ));
    }
    Ok(())
}

/// The store tag of package `name`.
pub fn code_image_tag(name: &str) -> String {
    format!("skiff-code/{name}:latest")
}

/// A package name: 1–64 of `a-z 0-9 _ . -`, starting with a letter or digit
/// (it becomes part of an image reference).
pub fn check_code_name(field: &str, name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{name:?}: 1–64 characters of a-z 0-9 _ . -, starting with a letter or digit"),
        ))
    }
}

/// Largest webhook URL.
const MAX_URL: usize = 2048;

/// A webhook URL: `http` or `https`, with a host.
pub fn check_webhook_url(url: &str) -> Result<(), FieldError> {
    if url.len() > MAX_URL {
        return Err(FieldError::new(
            "webhook",
            format!("longer than {MAX_URL} bytes"),
        ));
    }
    let u = reqwest::Url::parse(url)
        .map_err(|e| FieldError::new("webhook", format!("{url:?} is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err(FieldError::new(
            "webhook",
            format!("{url:?}: only http and https URLs with a host"),
        ));
    }
    Ok(())
}

impl JobRequest {
    /// The image reference the job runs: its image, or its code package's.
    pub fn image_ref(&self) -> String {
        match &self.code {
            Some(c) => code_image_tag(c),
            None => self.image.clone(),
        }
    }

    /// Check every field; the error names the first bad one.
    pub fn validate(self) -> Result<ValidJob, FieldError> {
        match (&self.code, self.image.trim().is_empty()) {
            (None, true) => {
                return Err(FieldError::new(
                    "image",
                    "is required (or name a code package)",
                ))
            }
            (Some(_), false) => {
                return Err(FieldError::new(
                    "code",
                    "name an image or a code package, not both",
                ))
            }
            (Some(c), true) => check_code_name("code", c)?,
            (None, false) => {}
        }
        list_field("command", &self.command)?;
        list_field("env", &self.env)?;
        for (i, e) in self.env.iter().enumerate() {
            match e.split_once('=') {
                Some((k, _)) if !k.is_empty() => {}
                _ => {
                    return Err(FieldError::new(
                        "env",
                        format!("item {i} ({e:?}) is not NAME=value"),
                    ))
                }
            }
        }
        let mut volumes = Vec::with_capacity(self.volumes.len());
        if self.volumes.len() > MAX_VOLUMES {
            return Err(FieldError::new(
                "volumes",
                format!("at most {MAX_VOLUMES} items"),
            ));
        }
        for (i, v) in self.volumes.iter().enumerate() {
            let parsed: runtime::job::Volume = v.parse().map_err(|e: runtime::error::Error| {
                FieldError::new(format!("volumes[{i}]"), e.to_string())
            })?;
            volumes.push(parsed);
        }
        let memory_bytes = match &self.memory {
            None => None,
            Some(Size::Bytes(b)) if *b > 0 => Some(*b as u64),
            Some(Size::Bytes(b)) => {
                return Err(FieldError::new(
                    "memory",
                    format!("{b} is not a positive size"),
                ))
            }
            Some(Size::Text(t)) => Some(
                runtime::job::parse_size("memory", t)
                    .map_err(|e| FieldError::new("memory", e.to_string()))?,
            ),
        };
        if let Some(m) = memory_bytes {
            if m < 6 << 20 {
                return Err(FieldError::new(
                    "memory",
                    "the minimum is 6 MiB (as Docker's)",
                ));
            }
        }
        if let Some(c) = self.cpus {
            if !(c.is_finite() && c > 0.0 && c <= 1024.0) {
                return Err(FieldError::new("cpus", format!("{c} is not in (0, 1024]")));
            }
        }
        if let Some(p) = self.pids {
            if p < 1 {
                return Err(FieldError::new(
                    "pids",
                    format!("{p} is not a positive count"),
                ));
            }
        }
        if let Some(p) = &self.payload {
            if p.len() > MAX_PAYLOAD_BYTES {
                return Err(FieldError::new(
                    "payload",
                    format!("{} bytes; the limit is {MAX_PAYLOAD_BYTES}", p.len()),
                ));
            }
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT_S);
        if timeout == 0 || timeout > MAX_TIMEOUT_S {
            return Err(FieldError::new(
                "timeout",
                format!("{timeout} s is not in 1–{MAX_TIMEOUT_S}"),
            ));
        }
        let priority = self.priority.unwrap_or(0);
        if !(0..=2).contains(&priority) {
            return Err(FieldError::new(
                "priority",
                format!("{priority} is not 0, 1 or 2"),
            ));
        }
        let delay = self.delay.unwrap_or(0);
        if delay > MAX_DELAY_S {
            return Err(FieldError::new(
                "delay",
                format!("{delay} s is over {MAX_DELAY_S}"),
            ));
        }
        let max_retries = self.max_retries.unwrap_or(0);
        if max_retries > MAX_RETRIES {
            return Err(FieldError::new(
                "max_retries",
                format!("{max_retries} is over {MAX_RETRIES}"),
            ));
        }
        let retry_delay = self.retry_delay.unwrap_or(10);
        if retry_delay > MAX_DELAY_S {
            return Err(FieldError::new(
                "retry_delay",
                format!("{retry_delay} s is over {MAX_DELAY_S}"),
            ));
        }
        name_field("label", &self.label)?;
        name_field("queue", &self.queue)?;
        name_field("idempotency_key", &self.idempotency_key)?;
        if let Some(url) = &self.webhook {
            check_webhook_url(url)?;
        }
        let queue = self.queue.clone().unwrap_or_else(|| "default".into());
        Ok(ValidJob {
            memory_bytes,
            timeout_ms: (timeout * 1000) as i64,
            priority,
            delay_ms: (delay * 1000) as i64,
            max_retries: max_retries.into(),
            retry_delay_ms: (retry_delay * 1000) as i64,
            queue,
            volumes,
            request: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> JobRequest {
        JobRequest {
            image: "busybox".into(),
            ..Default::default()
        }
    }

    #[test]
    fn test_defaults_applied() {
        let v = req().validate().expect("valid");
        assert_eq!(v.timeout_ms, 3_600_000);
        assert_eq!(v.priority, 0);
        assert_eq!(v.queue, "default");
        assert_eq!(v.max_retries, 0);
    }

    #[test]
    fn test_each_bad_field_is_named() {
        let cases: Vec<(&str, JobRequest)> = vec![
            ("image", JobRequest::default()),
            (
                "priority",
                JobRequest {
                    priority: Some(3),
                    ..req()
                },
            ),
            (
                "priority",
                JobRequest {
                    priority: Some(-1),
                    ..req()
                },
            ),
            (
                "memory",
                JobRequest {
                    memory: Some(Size::Bytes(-5)),
                    ..req()
                },
            ),
            (
                "memory",
                JobRequest {
                    memory: Some(Size::Text("lots".into())),
                    ..req()
                },
            ),
            (
                "cpus",
                JobRequest {
                    cpus: Some(-1.0),
                    ..req()
                },
            ),
            (
                "pids",
                JobRequest {
                    pids: Some(0),
                    ..req()
                },
            ),
            (
                "timeout",
                JobRequest {
                    timeout: Some(0),
                    ..req()
                },
            ),
            (
                "delay",
                JobRequest {
                    delay: Some(MAX_DELAY_S + 1),
                    ..req()
                },
            ),
            (
                "max_retries",
                JobRequest {
                    max_retries: Some(26),
                    ..req()
                },
            ),
            (
                "env",
                JobRequest {
                    env: vec!["NOEQUALS".into()],
                    ..req()
                },
            ),
            (
                "queue",
                JobRequest {
                    queue: Some(String::new()),
                    ..req()
                },
            ),
            (
                "payload",
                JobRequest {
                    payload: Some("x".repeat(MAX_PAYLOAD_BYTES + 1)),
                    ..req()
                },
            ),
        ];
        for (field, r) in cases {
            let e = r.clone().validate().expect_err(field);
            assert_eq!(e.field, field, "{r:?}: {e}");
        }
    }

    #[test]
    fn test_unknown_fields_refused() {
        let e = serde_json::from_str::<JobRequest>(r#"{"image":"x","bogus":1}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
