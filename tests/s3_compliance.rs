//! The shared store's backend gate: object_store's own compliance suite
//! (its `integration` functions, as its S3 tests run them) against the
//! S3 server the fleet tests use (SeaweedFS, see `common::seaweed`), for
//! what nucache relies on: put, get (ranged, conditional, streamed),
//! list, delete, create-if-absent (`PutMode::Create`), multipart uploads.
//!
//! `put_get_delete_list` is left out: its `list_with_offset` check fails on
//! SeaweedFS 4.48, whose ListObjectsV2 `start-after` skips the keys below a
//! "directory" the offset names (offset `a` leaves out `a/a.file`);
//! nucache never lists from an offset. Put, get, list and delete are
//! exercised by the functions below all the same.

mod common;

use common::seaweed::Seaweed;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::integration::*;
use object_store::{ObjectStore, ObjectStoreExt};

#[tokio::test]
async fn seaweedfs_passes_object_stores_own_suite_for_what_nucache_uses() {
    let Some(s3) = Seaweed::start("seaweedfs_passes_object_stores_own_suite").await else {
        return;
    };
    let store = s3.s3_client();
    // Each function expects the bucket as object_store's own suite leaves
    // it; emptied before each (its helper for that is private).
    empty(&store).await;
    get_opts(&store).await;
    empty(&store).await;
    list_uses_directories_correctly(&store).await;
    list_with_delimiter(&store).await;
    empty(&store).await;
    rename_and_copy(&store).await;
    empty(&store).await;
    stream_get(&store).await;
    get_nonexistent_object(&store, None).await.expect_err("no such object");
    // Create-if-absent, and If-Match updates (object_store's S3 suite runs
    // it so whenever conditional puts are on).
    put_opts(&store, true).await;
    empty(&store).await;
    put_get_attributes(&store).await;
    empty(&store).await;
    multipart(&store, &store).await;
    multipart_race_condition(&store, true).await;
    multipart_out_of_order(&store).await;
}

async fn empty(store: &AmazonS3) {
    let names: Vec<_> = store
        .list(None)
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .expect("a listing");
    for name in names {
        store.delete(&name).await.expect("a delete");
    }
}
