//! A request body streamed to a file under `ROOT/serve/uploads`, removed
//! when dropped (code packages, image imports).

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::{unavailable, ApiError, ApiResult};
use crate::error::FieldError;

/// An uploaded file; removed on drop.
pub(super) struct Upload {
    /// Where it is.
    pub path: PathBuf,
    /// Its size, bytes.
    pub size: usize,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Stream `body` into a new file under `root`'s upload directory; at most
/// `max` bytes, and not empty (`what` names the expected content).
pub(super) async fn receive(root: &Path, body: Body, max: usize, what: &str) -> ApiResult<Upload> {
    let dir = root.join("serve").join("uploads");
    tokio::fs::create_dir_all(&dir).await.map_err(unavailable)?;
    let mut up = Upload {
        path: dir.join(format!("{:016x}.upload", rand::random::<u64>())),
        size: 0,
    };
    let mut file = tokio::fs::File::create(&up.path)
        .await
        .map_err(unavailable)?;
    let mut body = body;
    while let Some(chunk) = body.frame().await {
        let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        let Ok(data) = chunk.into_data() else {
            continue;
        };
        up.size += data.len();
        if up.size > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{what}: at most {max} bytes"),
            ));
        }
        file.write_all(&data).await.map_err(unavailable)?;
    }
    file.flush().await.map_err(unavailable)?;
    if up.size == 0 {
        return Err(ApiError::field(FieldError::new(
            "body",
            format!("the body must be {what}"),
        )));
    }
    Ok(up)
}
