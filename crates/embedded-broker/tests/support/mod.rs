//! What the broker's tests share.

/// Runs each test on both storages: in memory, and on disk in a fresh folder.
macro_rules! on_each_storage {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread")]
            async fn in_memory() {
                super::$test(super::Storage::Memory).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn on_disk() {
                let folder = tempfile::tempdir().unwrap();
                super::$test(super::Storage::Disk(folder.path().to_owned())).await
            }
        }
    )*};
}
