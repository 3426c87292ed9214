//! The dashboard's warehouse sessions: a small pool (deadpool) so that concurrent viewers query side by side
//! instead of queueing on one connection. Sessions open on first use; a session whose connection broke reconnects
//! on its next statement ([`crate::warehouse::Connection`]), so recycling needs no round trip.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleResult};
use futures_util::future::BoxFuture;
use tokio_postgres::Client;

use super::DashboardError;
use crate::warehouse::{Loader, WarehouseError};

/// Opens one warehouse session (lazily connecting: the first statement connects).
pub type Connect =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Box<dyn Loader>, WarehouseError>> + Send + Sync>;

/// How long a request waits for a free session before it is refused (the pool is busy with slower requests).
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

struct Manager {
    connect: Connect,
}

impl managed::Manager for Manager {
    type Type = Box<dyn Loader>;
    type Error = WarehouseError;

    async fn create(&self) -> Result<Box<dyn Loader>, WarehouseError> {
        let mut session = (self.connect)().await?;
        read_only(session.as_mut()).await?;
        Ok(session)
    }

    /// Before each use: the session is read-only again (a session that reconnected since has lost its settings),
    /// which is also the check that its connection is alive; a failing one is dropped and a new one opened.
    async fn recycle(
        &self,
        session: &mut Box<dyn Loader>,
        _: &Metrics,
    ) -> RecycleResult<WarehouseError> {
        Ok(read_only(session.as_mut()).await?)
    }
}

/// Make every transaction of a PostgreSQL session read-only, so that no statement the dashboard sends can write.
/// (Redshift has no such setting; there each page's snapshot is `READ ONLY`, and the other statements are fixed
/// `SELECT`s.)
async fn read_only(session: &mut dyn Loader) -> Result<(), WarehouseError> {
    if session.dialect() == "postgres" {
        session
            .client()
            .await?
            .batch_execute("SET default_transaction_read_only = on")
            .await
            .map_err(|e| WarehouseError::Connect(crate::warehouse::describe(&e)))?;
    }
    Ok(())
}

/// Up to `size` warehouse sessions shared by the requests.
pub struct Pool {
    inner: managed::Pool<Manager>,
}

/// A session taken from the pool; it goes back when dropped.
pub struct Session(managed::Object<Manager>);

impl Session {
    /// The session's driver client (connecting, or reconnecting, if needed).
    pub async fn client(&mut self) -> Result<&mut Client, DashboardError> {
        Ok(self.0.client().await?)
    }
}

impl Pool {
    /// A pool of at most `size` sessions (at least one).
    pub fn new(connect: Connect, size: usize) -> Pool {
        let inner = managed::Pool::builder(Manager { connect })
            .max_size(size.max(1))
            .wait_timeout(Some(WAIT_TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime and a size builds");
        Pool { inner }
    }

    /// A free session, waiting up to [`WAIT_TIMEOUT`] for one.
    pub async fn get(&self) -> Result<Session, DashboardError> {
        self.inner.get().await.map(Session).map_err(|e| match e {
            managed::PoolError::Backend(e) => DashboardError::Warehouse(e),
            managed::PoolError::Timeout(_) => DashboardError::Busy(format!(
                "every warehouse session stayed busy for {} s",
                WAIT_TIMEOUT.as_secs()
            )),
            other => DashboardError::Query(other.to_string()),
        })
    }
}
