// Copyright ⓒ 2024-2025 Peter Morgan <peter.james.morgan@gmail.com>
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

use std::time::{Duration, Instant};

use rama::{Context, Service};
use tansu_sans_io::{
    ApiKey, ErrorCode, FetchRequest, FetchResponse, IsolationLevel,
    fetch_request::{FetchPartition, FetchTopic},
    fetch_response::{
        EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData, SnapshotId,
    },
    metadata_response::MetadataResponseTopic,
    record::deflated::{Batch, Frame},
};
use tokio::time::sleep;
use tracing::{debug, error, instrument};

use crate::{Error, OffsetStage, Result, Storage, Topition};

/// A [`Service`] using [`Storage`] as [`Context`] taking [`FetchRequest`] returning [`FetchResponse`].
/// ```
/// use rama::{Context, Layer as _, Service as _, layer::MapStateLayer};
/// use tansu_sans_io::{
///     CreateTopicsRequest, ErrorCode, FetchRequest,
///     create_topics_request::CreatableTopic,
///     fetch_request::{FetchPartition, FetchTopic},
/// };
/// use tansu_storage::{CreateTopicsService, Error, FetchService, StorageContainer};
/// use url::Url;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Error> {
/// const CLUSTER_ID: &str = "tansu";
/// const NODE_ID: i32 = 111;
/// const HOST: &str = "localhost";
/// const PORT: i32 = 9092;
///
/// let storage = StorageContainer::builder()
///     .cluster_id(CLUSTER_ID)
///     .node_id(NODE_ID)
///     .advertised_listener(Url::parse(&format!("tcp://{HOST}:{PORT}"))?)
///     .storage(Url::parse("memory://tansu/")?)
///     .build()
///     .await?;
///
/// let create_topic = {
///     let storage = storage.clone();
///     MapStateLayer::new(|_| storage).into_layer(CreateTopicsService)
/// };
///
/// let name = "abcba";
///
/// let response = create_topic
///     .serve(
///         Context::default(),
///         CreateTopicsRequest::default()
///             .topics(Some(vec![
///                 CreatableTopic::default()
///                     .name(name.into())
///                     .num_partitions(5)
///                     .replication_factor(3)
///                     .assignments(Some([].into()))
///                     .configs(Some([].into())),
///             ]))
///             .validate_only(Some(false)),
///     )
///     .await?;
///
/// let topics = response.topics.unwrap_or_default();
/// assert_eq!(1, topics.len());
/// assert_eq!(ErrorCode::None, ErrorCode::try_from(topics[0].error_code)?);
///
/// let fetch = {
///     let storage = storage.clone();
///     MapStateLayer::new(|_| storage).into_layer(FetchService)
/// };
///
/// let partition = 0;
///
/// let response = fetch
///     .serve(
///         Context::default(),
///         FetchRequest::default()
///             .topics(Some(
///                 [FetchTopic::default()
///                     .topic(Some(name.into()))
///                     .partitions(Some(
///                         [FetchPartition::default().partition(partition)].into(),
///                     ))]
///                 .into(),
///             ))
///             .max_bytes(Some(0))
///             .max_wait_ms(5_000),
///     )
///     .await?;
///
/// let topics = response.responses.as_deref().unwrap_or_default();
/// assert_eq!(1, topics.len());
/// let partitions = topics[0].partitions.as_deref().unwrap_or_default();
/// assert_eq!(1, partitions.len());
/// assert_eq!(
///     ErrorCode::None,
///     ErrorCode::try_from(partitions[0].error_code)?
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct FetchService;

/// shop patch: a fetched topic as the storage knows it: its id and its name.
type Resolved = (Option<[u8; 16]>, String);

impl ApiKey for FetchService {
    const KEY: i16 = FetchRequest::KEY;
}

impl FetchService {
    #[allow(clippy::too_many_arguments)]
    async fn fetch_partition<G>(
        &self,
        ctx: &Context<G>,
        max_wait_ms: Duration,
        min_bytes: u32,
        max_bytes: &mut u32,
        isolation: IsolationLevel,
        topic: &str,
        fetch_partition: &FetchPartition,
        known: Option<OffsetStage>,
        short: &mut bool,
    ) -> Result<PartitionData>
    where
        G: Storage,
    {
        debug!(
            ?max_wait_ms,
            ?min_bytes,
            ?max_bytes,
            ?isolation,
            ?fetch_partition
        );

        let partition_index = fetch_partition.partition;
        let tp = Topition::new(topic, partition_index);

        let mut batches = Vec::new();

        let mut offset = fetch_partition.fetch_offset;

        // shop patch: an offset below the log start (records deleted) or past the high
        // watermark is out of range, as a Kafka broker answers, so the consumer resets by its
        // `auto.offset.reset`; it was served nothing, and a consumer below the log start
        // waited there for ever. (The stage as the waiting fetch's look just read it, if it did.)
        let stage = match known {
            Some(stage) => stage,
            None => ctx
                .state()
                .offset_stage(&tp)
                .await
                .inspect_err(|error| error!(?error, ?tp))?,
        };
        if offset < stage.log_start() || offset > stage.high_watermark() {
            return Ok(Self::partition_data(partition_index, ErrorCode::OffsetOutOfRange, &stage, vec![]));
        }

        // shop patch: nothing past the offset (what a waiting fetch finds on most partitions):
        // answered from that stage, without asking the store for batches and for the stage
        // again.
        let end = if isolation == IsolationLevel::ReadCommitted {
            stage.last_stable()
        } else {
            stage.high_watermark()
        };
        if offset >= end {
            return Ok(Self::partition_data(partition_index, ErrorCode::None, &stage, vec![]));
        }

        loop {
            if *max_bytes == 0 {
                break;
            }

            debug!(offset);

            let mut fetched = ctx
                .state()
                .fetch(&tp, offset, min_bytes, *max_bytes, isolation)
                .await
                .inspect(|r| debug!(?tp, ?offset, ?r))
                .inspect_err(|error| error!(?tp, ?error))?;

            *max_bytes =
                u32::try_from(fetched.byte_size()).map(|bytes| max_bytes.saturating_sub(bytes))?;

            // shop patch: continue after the last batch; the first may start before `offset`
            // (a consumer resuming inside a batch gets the whole batch, as from Kafka).
            offset = fetched.last().map_or(offset, |batch| {
                batch.base_offset + batch.last_offset_delta as i64 + 1
            });

            debug!(?offset, ?fetched);

            if fetched.is_empty() || fetched.first().is_some_and(|batch| batch.record_count == 0) {
                break;
            } else {
                batches.append(&mut fetched);
            }
        }

        // shop patch: the records below the end not all served (not yet stored, or over
        // `max_bytes`): the next look must read them again even if no stage has moved.
        *short |= offset < end;

        let offset_stage = ctx
            .state()
            .offset_stage(&tp)
            .await
            .inspect_err(|error| error!(?error, ?tp))?;

        Ok(Self::partition_data(partition_index, ErrorCode::None, &offset_stage, batches))
            .inspect(|r| debug!(?r))
    }

    fn partition_data(
        partition_index: i32,
        error: ErrorCode,
        stage: &OffsetStage,
        batches: Vec<Batch>,
    ) -> PartitionData {
        PartitionData::default()
            .partition_index(partition_index)
            .error_code(error.into())
            .high_watermark(stage.high_watermark())
            .last_stable_offset(Some(stage.last_stable()))
            .log_start_offset(Some(stage.log_start()))
            .diverging_epoch(None)
            .current_leader(None)
            .snapshot_id(None)
            .aborted_transactions(Some([].into()))
            .preferred_read_replica(Some(-1))
            .records(if batches.is_empty() {
                None
            } else {
                Some(Frame { batches })
            })
    }

    fn unknown_topic_response(&self, fetch: &FetchTopic) -> Result<FetchableTopicResponse> {
        Ok(FetchableTopicResponse::default()
            .topic(fetch.topic.clone())
            .topic_id(Some([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
            .partitions(fetch.partitions.as_ref().map(|partitions| {
                partitions
                    .iter()
                    .map(|partition| {
                        PartitionData::default()
                            .partition_index(partition.partition)
                            .error_code(ErrorCode::UnknownTopicOrPartition.into())
                            .high_watermark(0)
                            .last_stable_offset(Some(0))
                            .log_start_offset(Some(-1))
                            .diverging_epoch(Some(
                                EpochEndOffset::default().epoch(-1).end_offset(-1),
                            ))
                            .current_leader(Some(
                                LeaderIdAndEpoch::default().leader_id(0).leader_epoch(0),
                            ))
                            .snapshot_id(Some(SnapshotId::default().end_offset(-1).epoch(-1)))
                            .aborted_transactions(Some([].into()))
                            .preferred_read_replica(Some(-1))
                            .records(None)
                    })
                    .collect()
            })))
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_topic<G>(
        &self,
        ctx: &Context<G>,
        max_wait_ms: Duration,
        min_bytes: u32,
        max_bytes: &mut u32,
        isolation: IsolationLevel,
        fetch: &FetchTopic,
        resolved: Option<&Resolved>,
        stages: &mut impl Iterator<Item = Option<OffsetStage>>,
        short: &mut bool,
    ) -> Result<FetchableTopicResponse>
    where
        G: Storage,
    {
        debug!(?max_wait_ms, ?min_bytes, ?isolation, ?fetch);

        if let Some((topic_id, name)) = resolved {
            let mut partitions = Vec::new();

            for fetch_partition in fetch.partitions.as_ref().unwrap_or(&Vec::new()) {
                let partition = self
                    .fetch_partition(
                        ctx,
                        max_wait_ms,
                        min_bytes,
                        max_bytes,
                        isolation,
                        name,
                        fetch_partition,
                        stages.next().flatten(),
                        short,
                    )
                    .await?;

                partitions.push(partition);
            }

            Ok(FetchableTopicResponse::default()
                .topic(fetch.topic.to_owned())
                .topic_id(topic_id.to_owned())
                .partitions(Some(partitions)))
        } else {
            self.unknown_topic_response(fetch)
        }
    }

    /// shop patch: the id and name of each topic fetched, or None for a topic the storage does
    /// not know: looked up once per request, not on every look of a waiting fetch.
    async fn resolve<G>(
        &self,
        ctx: &Context<G>,
        topics: &[FetchTopic],
    ) -> Result<Vec<Option<Resolved>>>
    where
        G: Storage,
    {
        let mut resolved = Vec::with_capacity(topics.len());
        for fetch in topics {
            let metadata = ctx.state().metadata(Some(&[fetch.into()])).await?;
            resolved.push(match metadata.topics().first() {
                Some(MetadataResponseTopic {
                    topic_id,
                    name: Some(name),
                    ..
                }) => Some((*topic_id, name.to_owned())),
                _ => None,
            });
        }
        Ok(resolved)
    }

    /// shop patch: the stage of every partition fetched (None where it cannot be read), to
    /// tell cheaply whether anything changed since the last look.
    async fn stages<G>(
        &self,
        ctx: &Context<G>,
        topics: &[FetchTopic],
        resolved: &[Option<Resolved>],
    ) -> Vec<Option<OffsetStage>>
    where
        G: Storage,
    {
        let mut stages = Vec::new();
        for (fetch, resolved) in topics.iter().zip(resolved) {
            let Some((_, name)) = resolved else { continue };
            for partition in fetch.partitions.as_deref().unwrap_or_default() {
                let tp = Topition::new(name.as_str(), partition.partition);
                stages.push(ctx.state().offset_stage(&tp).await.ok());
            }
        }
        stages
    }

    pub(crate) async fn fetch<G>(
        &self,
        ctx: Context<G>,
        max_wait: Duration,
        min_bytes: u32,
        max_bytes: &mut u32,
        isolation: IsolationLevel,
        topics: &[FetchTopic],
    ) -> Result<Vec<FetchableTopicResponse>>
    where
        G: Storage,
    {
        debug!(?max_wait, ?min_bytes, ?isolation, ?topics);

        if topics.is_empty() {
            return Ok(vec![]);
        }

        // shop patch: answered as soon as there are records (at least `min_bytes`), or an
        // error, or when `max_wait` is over, as a Kafka broker answers a fetch. tansu held
        // every fetch for at least half its wait, records or not (so the services asked with a
        // 5 ms wait: an idle system fetched 200 times a second per consumer), and counted the
        // batches' bytes again on every look. Between looks the fetch waits for the next
        // produce where the storage can tell (`Storage::produced`), else a while.
        // A look that finds the stage of every partition as it was on the last one (the
        // wake was for other partitions) is not a full look again: only the stages are read.
        const LOOK_AGAIN: Duration = Duration::from_millis(50);
        let deadline = Instant::now() + max_wait;
        let mut produced = ctx.state().produced();
        let limit = *max_bytes;
        let resolved = self.resolve(&ctx, topics).await?;
        let mut seen = None;
        let mut last = None;
        loop {
            if let Some(produced) = produced.as_mut() {
                // What is produced from here on wakes the wait below.
                _ = produced.borrow_and_update();
            }
            let stages = self.stages(&ctx, topics, &resolved).await;
            if seen.as_ref() != Some(&stages) {
                let mut short = false;
                let mut known = stages.iter().copied();
                *max_bytes = limit;
                let mut responses = Vec::with_capacity(topics.len());
                for (fetch, resolved) in topics.iter().zip(&resolved) {
                    responses.push(
                        self.fetch_topic(
                            &ctx,
                            max_wait,
                            min_bytes,
                            max_bytes,
                            isolation,
                            fetch,
                            resolved.as_ref(),
                            &mut known,
                            &mut short,
                        )
                        .await?,
                    );
                }
                seen = (!short).then_some(stages);
                let bytes = limit.saturating_sub(*max_bytes);
                let failed = responses.iter().any(|topic| {
                    topic.partitions.as_deref().unwrap_or_default().iter().any(|partition| {
                        partition.error_code != i16::from(ErrorCode::None)
                    })
                });
                let remaining = deadline.saturating_duration_since(Instant::now());
                debug!(?bytes, ?min_bytes, ?remaining, failed);
                if bytes >= min_bytes.max(1) || failed || remaining.is_zero() {
                    return Ok(responses);
                }
                last = Some(responses);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(last.unwrap_or_default());
            }
            match produced.as_mut() {
                Some(watch) => {
                    if let Ok(Err(_)) = tokio::time::timeout(remaining, watch.changed()).await {
                        // The storage is gone: no more wakes.
                        produced = None;
                    }
                }
                None => sleep(remaining.min(LOOK_AGAIN)).await,
            }
        }
    }
}

impl<G> Service<G, FetchRequest> for FetchService
where
    G: Storage,
{
    type Response = FetchResponse;
    type Error = Error;

    #[instrument(skip(ctx, req))]
    async fn serve(
        &self,
        ctx: Context<G>,
        req: FetchRequest,
    ) -> Result<Self::Response, Self::Error> {
        let responses = Some(if let Some(topics) = req.topics {
            let isolation_level = req
                .isolation_level
                .map_or(Ok(IsolationLevel::ReadUncommitted), |isolation| {
                    IsolationLevel::try_from(isolation)
                })?;

            let max_wait_ms = u64::try_from(req.max_wait_ms).map(Duration::from_millis)?;

            let min_bytes = u32::try_from(req.min_bytes)?;

            const DEFAULT_MAX_BYTES: u32 = 5 * 1024 * 1024;

            let mut max_bytes = req.max_bytes.map_or(Ok(DEFAULT_MAX_BYTES), |max_bytes| {
                u32::try_from(max_bytes).map(|max_bytes| max_bytes.min(DEFAULT_MAX_BYTES))
            })?;

            self.fetch(
                ctx,
                max_wait_ms,
                min_bytes,
                &mut max_bytes,
                isolation_level,
                topics.as_ref(),
            )
            .await?
        } else {
            vec![]
        });

        Ok(FetchResponse::default()
            .throttle_time_ms(Some(0))
            .error_code(Some(ErrorCode::None.into()))
            .session_id(Some(0))
            .node_endpoints(Some([].into()))
            .responses(responses))
        .inspect(|r| debug!(?r))
    }
}

trait ByteSize {
    fn byte_size(&self) -> u64;
}

impl<T> ByteSize for Vec<T>
where
    T: ByteSize,
{
    fn byte_size(&self) -> u64 {
        self.iter().map(|item| item.byte_size()).sum()
    }
}

impl<T> ByteSize for Option<T>
where
    T: ByteSize,
{
    fn byte_size(&self) -> u64 {
        self.as_ref().map_or(0, |some| some.byte_size())
    }
}

impl ByteSize for Batch {
    fn byte_size(&self) -> u64 {
        self.record_data.len() as u64
    }
}

impl ByteSize for Frame {
    fn byte_size(&self) -> u64 {
        self.batches.byte_size()
    }
}

impl ByteSize for PartitionData {
    fn byte_size(&self) -> u64 {
        self.records.byte_size()
    }
}

impl ByteSize for FetchableTopicResponse {
    fn byte_size(&self) -> u64 {
        self.partitions.byte_size()
    }
}
