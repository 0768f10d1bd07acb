//! Handlers whose whole effect is one database transaction (the inbox entry, the change of
//! state, the outbox rows), written once: a record is applied in a transaction of its own,
//! and the records of a partition that waited together (under load) in one transaction, so
//! they share its begin and its commit, the costliest statements of a small transaction.

use async_trait::async_trait;
use tracing::Instrument;

use crate::consumer::{HandleError, Handler, Incoming};
use crate::db::{Pool, Transaction};
use crate::outbox::Outbox;

/// What a service implements to apply an event within a transaction.
#[async_trait]
pub trait Apply: Send + Sync + 'static {
    /// What `apply` hands on to `committed`, per record applied.
    type Applied: Send;

    /// Applies `incoming` within `tx`. Returns None when it had been applied before (its
    /// inbox entry exists) and nothing was written.
    async fn apply(&self, tx: &mut Transaction<'_>, incoming: &Incoming) -> Result<Option<Self::Applied>, HandleError>;

    /// After the commit, with what each applied record returned: tell live streams. Not
    /// called when nothing was applied.
    fn committed(&self, _applied: Vec<Self::Applied>) {}
}

/// Runs an `Apply` as the consumer's `Handler`. A failure rolls the whole transaction back;
/// the consumer then handles a failed batch's records one by one, each in its own.
pub struct InTransaction<A> {
    pub pool: Pool,
    pub apply: A,
    /// The outbox `apply` enqueues into, if any: the transaction commits through it, so its
    /// relay is woken.
    pub outbox: Option<Outbox>,
}

#[async_trait]
impl<A: Apply> Handler for InTransaction<A> {
    async fn handle(&self, incoming: &Incoming) -> Result<(), HandleError> {
        self.handle_batch(std::slice::from_ref(incoming)).await
    }

    async fn handle_batch(&self, batch: &[Incoming]) -> Result<(), HandleError> {
        let mut tx = self.pool.begin().await?;
        let mut applied = Vec::with_capacity(batch.len());
        for incoming in batch {
            match self.apply.apply(&mut tx, incoming).instrument(incoming.span.clone()).await? {
                Some(done) => applied.push(done),
                None => {
                    tracing::debug!(event_id = %incoming.envelope.id, "Event already applied; skipping the redelivery")
                }
            }
        }
        if applied.is_empty() {
            return Ok(()); // nothing written: the transaction rolls back
        }
        match &self.outbox {
            Some(outbox) => outbox.commit(tx).await?,
            None => tx.commit().await?,
        }
        self.apply.committed(applied);
        Ok(())
    }
}
