use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_intrusive::sync::{Mutex, MutexGuard};

use sqlx_core::describe::Describe;
use sqlx_core::error::Error;
use sqlx_core::transaction::{
    begin_ansi_transaction_sql, commit_ansi_transaction_sql, rollback_ansi_transaction_sql,
};
use sqlx_core::Either;

use crate::connection::describe::describe;
use crate::connection::establish::EstablishParams;
use crate::connection::execute;
use crate::connection::ConnectionState;
use crate::{Sqlite, SqliteArguments, SqliteQueryResult, SqliteRow, SqliteStatement};

use super::serialize::{deserialize, serialize, SchemaName, SqliteOwnedBuf};

// shop patch: no thread per connection. sqlx 0.8.6 gives each SQLite connection a thread of its
// own and sends it every statement, BEGIN and COMMIT over a channel: two thread switches per
// statement at least (three for BEGIN and COMMIT, which are acknowledged), the largest source of
// thread switches in the shop's services. Here the caller runs each command itself, on its own
// thread, holding the connection's mutex for the command: SQLite's calls are synchronous and,
// with WAL and `synchronous=NORMAL`, short (no disk flush at COMMIT). What changes for the
// caller: a statement blocks the calling (async) thread while it runs, including SQLite's busy
// wait when another process holds the write lock (bounded by `busy_timeout`), and a query's rows
// are all read before the first is returned. See vendor/README.md.

pub(crate) struct ConnectionWorker {
    /// Mutex for locking access to the database.
    pub(crate) shared: Arc<WorkerSharedState>,
}

pub(crate) struct WorkerSharedState {
    transaction_depth: AtomicUsize,
    cached_statements_size: AtomicUsize,
    pub(crate) conn: Mutex<ConnectionState>,
}

impl WorkerSharedState {
    pub(crate) fn get_transaction_depth(&self) -> usize {
        self.transaction_depth.load(Ordering::Acquire)
    }

    pub(crate) fn get_cached_statements_size(&self) -> usize {
        self.cached_statements_size.load(Ordering::Acquire)
    }
}

impl ConnectionWorker {
    pub(crate) async fn establish(params: EstablishParams) -> Result<Self, Error> {
        let conn = params.establish()?;
        Ok(Self {
            shared: Arc::new(WorkerSharedState {
                transaction_depth: AtomicUsize::new(0),
                cached_statements_size: AtomicUsize::new(0),
                conn: Mutex::new(conn, true),
            }),
        })
    }

    async fn lock(&self) -> MutexGuard<'_, ConnectionState> {
        self.shared.conn.lock().await
    }

    pub(crate) async fn prepare(&mut self, query: &str) -> Result<SqliteStatement<'static>, Error> {
        let mut conn = self.lock().await;
        let prepared = prepare(&mut conn, query)?;
        update_cached_statements_size(&conn, &self.shared.cached_statements_size);
        Ok(prepared)
    }

    pub(crate) async fn describe(&mut self, query: &str) -> Result<Describe<Sqlite>, Error> {
        let mut conn = self.lock().await;
        describe(&mut conn, query)
    }

    pub(crate) async fn execute(
        &mut self,
        query: &str,
        args: Option<SqliteArguments<'_>>,
        _chan_size: usize,
        persistent: bool,
        limit: Option<usize>,
    ) -> Result<flume::Receiver<Result<Either<SqliteQueryResult, SqliteRow>, Error>>, Error> {
        // Every result is in the channel before the caller reads the first: reading them
        // wakes no one.
        let (tx, rx) = flume::unbounded();
        let mut conn = self.lock().await;
        match execute::iter(&mut conn, query, args, persistent) {
            Err(e) => {
                tx.send(Err(e)).ok();
            }
            Ok(iter) => {
                let mut rows_returned = 0;
                for res in iter {
                    let has_error = res.is_err();
                    let is_row = matches!(&res, Ok(Either::Right(_)));
                    tx.send(res).ok();
                    if has_error {
                        break;
                    }
                    if is_row {
                        rows_returned += 1;
                        if limit.is_some_and(|limit| rows_returned >= limit) {
                            break;
                        }
                    }
                }
            }
        }
        update_cached_statements_size(&conn, &self.shared.cached_statements_size);
        Ok(rx)
    }

    pub(crate) async fn begin(
        &mut self,
        statement: Option<Cow<'static, str>>,
    ) -> Result<(), Error> {
        let mut conn = self.lock().await;
        let depth = self.shared.transaction_depth.load(Ordering::Acquire);
        let statement = match statement {
            // custom `BEGIN` statements are not allowed if we're already in a transaction (we
            // need to issue a `SAVEPOINT` instead)
            Some(_) if depth > 0 => return Err(Error::InvalidSavePointStatement),
            Some(statement) => statement,
            None => begin_ansi_transaction_sql(depth),
        };
        // Nothing can cancel the command between here and the return: no `BEGIN` is left
        // unacknowledged, as one could be with a thread that ran it on its own.
        conn.handle.exec(statement)?;
        self.shared.transaction_depth.fetch_add(1, Ordering::Release);
        Ok(())
    }

    pub(crate) async fn commit(&mut self) -> Result<(), Error> {
        let mut conn = self.lock().await;
        end_transaction(&mut conn, &self.shared, commit_ansi_transaction_sql)
    }

    pub(crate) async fn rollback(&mut self) -> Result<(), Error> {
        let mut conn = self.lock().await;
        end_transaction(&mut conn, &self.shared, rollback_ansi_transaction_sql)
    }

    /// Rolls back at once, from a `Transaction` dropped while open. The connection is borrowed
    /// by that transaction, so nothing else holds its mutex (a `LockedSqliteHandle` borrows the
    /// connection too).
    pub(crate) fn start_rollback(&mut self) -> Result<(), Error> {
        let mut conn = self.shared.conn.try_lock().ok_or(Error::WorkerCrashed)?;
        end_transaction(&mut conn, &self.shared, rollback_ansi_transaction_sql)
    }

    pub(crate) async fn ping(&mut self) -> Result<(), Error> {
        Ok(())
    }

    pub(crate) async fn deserialize(
        &mut self,
        schema: Option<SchemaName>,
        data: SqliteOwnedBuf,
        read_only: bool,
    ) -> Result<(), Error> {
        let mut conn = self.lock().await;
        deserialize(&mut conn, schema, data, read_only)
    }

    pub(crate) async fn serialize(
        &mut self,
        schema: Option<SchemaName>,
    ) -> Result<SqliteOwnedBuf, Error> {
        let mut conn = self.lock().await;
        serialize(&mut conn, schema)
    }

    pub(crate) async fn clear_cache(&mut self) -> Result<(), Error> {
        let mut conn = self.lock().await;
        conn.statements.clear();
        update_cached_statements_size(&conn, &self.shared.cached_statements_size);
        Ok(())
    }

    pub(crate) async fn unlock_db(&mut self) -> Result<MutexGuard<'_, ConnectionState>, Error> {
        Ok(self.lock().await)
    }

    /// There is no thread to stop: the connection closes when the last reference to it goes.
    pub(crate) fn shutdown(&mut self) -> impl Future<Output = Result<(), Error>> {
        std::future::ready(Ok(()))
    }
}

/// COMMIT or ROLLBACK (`sql` at the current depth), if a transaction is open.
fn end_transaction(
    conn: &mut ConnectionState,
    shared: &WorkerSharedState,
    sql: fn(usize) -> Cow<'static, str>,
) -> Result<(), Error> {
    let depth = shared.transaction_depth.load(Ordering::Acquire);
    if depth > 0 {
        conn.handle.exec(sql(depth))?;
        shared.transaction_depth.fetch_sub(1, Ordering::Release);
    }
    Ok(())
}

fn prepare(conn: &mut ConnectionState, query: &str) -> Result<SqliteStatement<'static>, Error> {
    // prepare statement object (or checkout from cache)
    let statement = conn.statements.get(query, true)?;

    let mut parameters = 0;
    let mut columns = None;
    let mut column_names = None;

    while let Some(statement) = statement.prepare_next(&mut conn.handle)? {
        parameters += statement.handle.bind_parameter_count();

        // the first non-empty statement is chosen as the statement we pull columns from
        if !statement.columns.is_empty() && columns.is_none() {
            columns = Some(Arc::clone(statement.columns));
            column_names = Some(Arc::clone(statement.column_names));
        }
    }

    Ok(SqliteStatement {
        sql: Cow::Owned(query.to_string()),
        columns: columns.unwrap_or_default(),
        column_names: column_names.unwrap_or_default(),
        parameters,
    })
}

fn update_cached_statements_size(conn: &ConnectionState, size: &AtomicUsize) {
    size.store(conn.statements.len(), Ordering::Release);
}
