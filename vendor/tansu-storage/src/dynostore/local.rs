// shop patch: a folder on disk as the store of a broker that is its only writer.

use std::fmt::{Debug, Display};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    local::LocalFileSystem, path::Path,
};
use tokio::sync::Mutex;

/// The local file system, without attributes, and with the conditional put (`PutMode::Update`, compare the version
/// and replace) that `LocalFileSystem` does not offer and a consumer group's state needs. It
/// is safe here because this process is the store's only writer: the comparison and the
/// replacement happen under one lock.
pub(super) struct Exclusive {
    inner: LocalFileSystem,
    updating: Mutex<()>,
}

impl Exclusive {
    pub(super) fn new(inner: LocalFileSystem) -> Self {
        Self {
            inner,
            updating: Mutex::new(()),
        }
    }
}

impl Debug for Exclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exclusive").field("inner", &self.inner).finish()
    }
}

impl Display for Exclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Exclusive({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Exclusive {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult, object_store::Error> {
        // A file has no content type: the attributes the engine sets (JSON) are dropped, as
        // `LocalFileSystem` refuses them.
        let opts = PutOptions {
            attributes: Default::default(),
            ..opts
        };
        let PutMode::Update(expected) = &opts.mode else {
            return self.inner.put_opts(location, payload, opts).await;
        };
        let _updating = self.updating.lock().await;
        let current = match self.inner.head(location).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { path, source }) => {
                return Err(object_store::Error::Precondition { path, source });
            }
            Err(otherwise) => return Err(otherwise),
        };
        if current.e_tag != expected.e_tag {
            return Err(object_store::Error::Precondition {
                path: location.to_string(),
                source: format!("version {:?}, not {:?}", current.e_tag, expected.e_tag).into(),
            });
        }
        self.inner
            .put_opts(
                location,
                payload,
                PutOptions {
                    mode: PutMode::Overwrite,
                    ..opts
                },
            )
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>, object_store::Error> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> Result<GetResult, object_store::Error> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path, object_store::Error>>,
    ) -> BoxStream<'static, Result<Path, object_store::Error>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> BoxStream<'static, Result<ObjectMeta, object_store::Error>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> Result<ListResult, object_store::Error> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        opts: CopyOptions,
    ) -> Result<(), object_store::Error> {
        self.inner.copy_opts(from, to, opts).await
    }
}
