//! The PostgreSQL the queue benchmarks (`--noop`, `--fleet`) run on: the
//! server given with `--db`, on which each round gets a new database,
//! dropped after (the given database itself is never written), or else a
//! private cluster started in a temporary directory with PostgreSQL's
//! stock settings, gone when dropped.

use scheduler::db::postgres::local::LocalCluster;

use super::{QueueBenchError, Result};

/// A PostgreSQL failure, as the benchmark reports it.
pub(super) fn db_err(e: impl std::fmt::Display) -> QueueBenchError {
    QueueBenchError::Task(format!("PostgreSQL: {e}"))
}

/// Where the rounds' databases are made.
#[derive(Debug)]
pub(super) enum Server {
    /// `--db URL`.
    Given(String),
    /// A cluster of the benchmark's own.
    Private(LocalCluster),
}

impl Server {
    /// The server at `db`, or a private cluster when `None`.
    pub(super) fn start(db: Option<&str>) -> Result<Server> {
        match db {
            Some(url) => Ok(Server::Given(url.to_string())),
            None => Ok(Server::Private(
                LocalCluster::start_durable()
                    .map_err(db_err)?
                    .ok_or_else(|| db_err("PostgreSQL is not installed: give --db postgres://…"))?,
            )),
        }
    }

    /// What the results say of it.
    pub(super) fn describe(&self) -> String {
        match self {
            Server::Given(url) => format!("given: {url}"),
            Server::Private(c) => format!(
                "private cluster on 127.0.0.1:{} (this host, PostgreSQL's stock settings)",
                c.port()
            ),
        }
    }

    /// A new database `name`; its URL.
    pub(super) async fn database(&self, name: &str) -> Result<String> {
        use sqlx::ConnectOptions;
        match self {
            Server::Private(c) => c.url(name).map_err(db_err),
            Server::Given(url) => {
                let opts: sqlx::postgres::PgConnectOptions = url.parse().map_err(db_err)?;
                let mut conn = opts.connect().await.map_err(db_err)?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .map_err(db_err)?;
                Ok(opts.database(name).to_url_lossy().to_string())
            }
        }
    }

    /// Drop database `name` again on a given server (best effort); a
    /// private cluster goes as a whole.
    pub(super) async fn drop_database(&self, name: &str) {
        use sqlx::ConnectOptions;
        let Server::Given(url) = self else {
            return;
        };
        let Ok(opts) = url.parse::<sqlx::postgres::PgConnectOptions>() else {
            return;
        };
        if let Ok(mut conn) = opts.connect().await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        }
    }
}
