// shop patch: CreatePartitions (kafka-topics --alter --partitions), which tansu 0.6 did not
// serve.

use rama::{Context, Service};
use tansu_sans_io::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse,
    create_partitions_response::CreatePartitionsTopicResult,
};
use tracing::instrument;

use crate::{Error, Result, Storage};

/// A [`Service`] adding partitions to topics with [`Storage::create_partitions`].
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct CreatePartitionsService;

impl ApiKey for CreatePartitionsService {
    const KEY: i16 = CreatePartitionsRequest::KEY;
}

impl<G> Service<G, CreatePartitionsRequest> for CreatePartitionsService
where
    G: Storage,
{
    type Response = CreatePartitionsResponse;
    type Error = Error;

    #[instrument(skip(ctx, req))]
    async fn serve(
        &self,
        ctx: Context<G>,
        req: CreatePartitionsRequest,
    ) -> Result<Self::Response, Self::Error> {
        let mut results = vec![];
        for topic in req.topics.unwrap_or_default() {
            let (error_code, error_message) = if topic.assignments.is_some() {
                // One broker: there is no other placement to ask for.
                (
                    tansu_sans_io::ErrorCode::InvalidReplicaAssignment,
                    Some("replica assignments are not supported by this broker".into()),
                )
            } else {
                ctx.state()
                    .create_partitions(&topic.name, topic.count, req.validate_only)
                    .await?
            };
            results.push(
                CreatePartitionsTopicResult::default()
                    .name(topic.name)
                    .error_code(error_code.into())
                    .error_message(error_message),
            );
        }
        Ok(CreatePartitionsResponse::default()
            .throttle_time_ms(0)
            .results(Some(results)))
    }
}
