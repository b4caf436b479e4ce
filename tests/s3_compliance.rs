//! The shared store's backend gate: object_store's own compliance suite
//! (its `integration` functions, as its S3 tests run them) against the
//! S3 server the fleet tests use (SeaweedFS, see `common::seaweed`), for
//! what nucache relies on: put, get (ranged, conditional, streamed),
//! list, delete, create-if-absent (`PutMode::Create`), multipart uploads.

mod common;

use common::seaweed::{Seaweed, BUCKET};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::integration::*;

fn client(s3: &Seaweed) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_skip_signature(true)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .build()
        .expect("an S3 client")
}

#[tokio::test]
async fn seaweedfs_passes_object_stores_own_suite_for_what_nucache_uses() {
    let Some(s3) = Seaweed::start("seaweedfs_passes_object_stores_own_suite").await else {
        return;
    };
    let store = client(&s3);
    put_get_delete_list(&store).await;
    get_opts(&store).await;
    stream_get(&store).await;
    list_uses_directories_correctly(&store).await;
    list_with_delimiter(&store).await;
    get_nonexistent_object(&store, None).await.expect_err("no such object");
    put_opts(&store, false).await;
    multipart(&store, &store).await;
    multipart_race_condition(&store, true).await;
    multipart_out_of_order(&store).await;
}
