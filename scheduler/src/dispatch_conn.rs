//! The dispatcher's own SQLite connection (`synchronous=NORMAL`): one
//! connection, held by one turn at a time. Not a pool: sqlx's pool pings
//! the database thread whenever a connection is taken (by default) and
//! whenever it comes back (always), two round trips per turn for nothing.

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::error::QueueError;

/// The connection, opened on first use and again after a failure.
#[derive(Debug, Clone)]
pub(crate) struct DispatchConn {
    conn: Arc<Mutex<Option<SqliteConnection>>>,
    opts: SqliteConnectOptions,
}

impl DispatchConn {
    /// Open it with `opts`.
    pub(crate) async fn open(opts: SqliteConnectOptions) -> Result<DispatchConn, QueueError> {
        let conn = opts.connect().await?;
        Ok(DispatchConn {
            conn: Arc::new(Mutex::new(Some(conn))),
            opts,
        })
    }

    /// The connection, for one turn.
    pub(crate) async fn lock(&self) -> Result<MappedMutexGuard<'_, SqliteConnection>, QueueError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            *guard = Some(self.opts.connect().await?);
        }
        Ok(MutexGuard::map(guard, |c| {
            c.as_mut().expect("connected just above")
        }))
    }

    /// Close the connection after a failure (ending any transaction left
    /// open); the next [`DispatchConn::lock`] opens a new one.
    pub(crate) async fn discard(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            let _ = c.close().await;
        }
    }
}
