//! Code packages on PostgreSQL: [`CodeStorage`] for [`PgStore`]. The
//! layer as pushed is kept in `code_layers`, in chunks, with its sha256 in
//! the package's row, so that any worker of the fleet can make the image;
//! a push replaces row and chunks in one transaction, and a fetch reads
//! both from one snapshot.

use std::path::Path;

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::PgStore;
use crate::code::Package;
use crate::db::code_store::CodeStorage;
use crate::error::QueueError;
use crate::queue::now_ms;

/// Bytes per stored chunk.
const CHUNK: usize = 1 << 20;

fn from_row(r: &PgRow) -> Result<Package, QueueError> {
    let name: String = r.try_get("name")?;
    Ok(Package {
        command: crate::code::parse_command(&name, r.try_get("command")?)?,
        base_image: r.try_get("base_image")?,
        image_id: r.try_get("image_id")?,
        layer_bytes: r.try_get("layer_bytes")?,
        layer_digest: r.try_get("layer_digest")?,
        max_concurrency: r.try_get("max_concurrency")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        name,
    })
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> QueueError + 'a {
    move |source| QueueError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn sha256(h: Sha256) -> String {
    format!("sha256:{:x}", h.finalize())
}

#[async_trait::async_trait]
impl CodeStorage for PgStore {
    async fn put_package(&self, p: &Package, layer: &Path) -> Result<(), QueueError> {
        let mut file = tokio::fs::File::open(layer)
            .await
            .map_err(io_err("open code layer", layer))?;
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO code_packages (name, base_image, image_id, command, layer_bytes, \
             max_concurrency, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (name) DO UPDATE SET base_image = excluded.base_image, \
             image_id = excluded.image_id, command = excluded.command, \
             layer_bytes = excluded.layer_bytes, max_concurrency = excluded.max_concurrency, \
             layer_digest = NULL, updated_at = excluded.updated_at",
        )
        .bind(&p.name)
        .bind(&p.base_image)
        .bind(&p.image_id)
        .bind(crate::code::command_json(p))
        .bind(p.layer_bytes)
        .bind(p.max_concurrency)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM code_layers WHERE name = $1")
            .bind(&p.name)
            .execute(&mut *tx)
            .await?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        for seq in 0i32.. {
            let mut n = 0;
            while n < CHUNK {
                match file
                    .read(&mut buf[n..])
                    .await
                    .map_err(io_err("read code layer", layer))?
                {
                    0 => break,
                    k => n += k,
                }
            }
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            sqlx::query("INSERT INTO code_layers (name, seq, data) VALUES ($1, $2, $3)")
                .bind(&p.name)
                .bind(seq)
                .bind(&buf[..n])
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE code_packages SET layer_digest = $2 WHERE name = $1")
            .bind(&p.name)
            .bind(sha256(hash))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn package(&self, name: &str) -> Result<Option<Package>, QueueError> {
        sqlx::query("SELECT * FROM code_packages WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    async fn packages(&self) -> Result<Vec<Package>, QueueError> {
        sqlx::query("SELECT * FROM code_packages ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    async fn remove_package(&self, name: &str) -> Result<bool, QueueError> {
        let r = sqlx::query("DELETE FROM code_packages WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn fetch_layer(&self, name: &str, to: &Path) -> Result<Option<Package>, QueueError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let Some(p) = sqlx::query("SELECT * FROM code_packages WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()?
        else {
            return Ok(None);
        };
        let mut out = tokio::fs::File::create(to)
            .await
            .map_err(io_err("create code layer", to))?;
        let mut hash = Sha256::new();
        let mut chunks = sqlx::query("SELECT data FROM code_layers WHERE name = $1 ORDER BY seq")
            .bind(name)
            .fetch(&mut *tx);
        while let Some(row) = chunks.try_next().await? {
            let data: &[u8] = row.try_get("data")?;
            hash.update(data);
            out.write_all(data)
                .await
                .map_err(io_err("write code layer", to))?;
        }
        drop(chunks);
        tx.commit().await?;
        out.sync_all()
            .await
            .map_err(io_err("write code layer", to))?;
        let got = sha256(hash);
        let want = p.layer_digest.clone().unwrap_or_default();
        if got != want {
            return Err(QueueError::LayerDigest {
                name: name.to_string(),
                want,
                got,
            });
        }
        Ok(Some(p))
    }
}
