//! Administrative attachment tools: `confer attachments clean-up` and `compress`.
//!
//! Clean-up removes the files of attachments whose messages are all older than N days;
//! the attachments are marked missing (the file URL answers 410 with a placeholder) and
//! the messages stay. Bytes are freed only when no other live attachment shares the blob.

use std::sync::Arc;

use anyhow::Context;
use confer_core::model::now_us;
use confer_core::Core;
use confer_door_files::BlobStore;
use indicatif::{ProgressBar, ProgressStyle};

/// What a clean-up did (or, in a dry run, would do).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CleanUpSummary {
    pub files: u64,
    pub bytes_freed: u64,
}

fn bar(len: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar
}

pub async fn clean_up(
    core: &Arc<Core>,
    blobs: &dyn BlobStore,
    older_than_days: u64,
    dry_run: bool,
    quiet: bool,
) -> anyhow::Result<CleanUpSummary> {
    let age_us = i64::try_from(older_than_days.saturating_mul(86_400_000_000)).unwrap_or(i64::MAX);
    let cutoff = now_us().saturating_sub(age_us);
    let stale = core.stale_attachments(cutoff).await?;
    let progress = bar(stale.len() as u64, quiet);
    let mut summary = CleanUpSummary::default();
    for item in stale {
        let a = &item.attachment;
        progress.set_message(a.filename.clone());
        summary.files += 1;
        if !item.blob_shared {
            summary.bytes_freed += a.size;
        }
        if !dry_run {
            core.mark_attachment_missing(a.item_id).await?;
            if !core.blob_in_use(&a.sha256, a.item_id).await? {
                blobs
                    .remove(&a.sha256)
                    .await
                    .with_context(|| format!("removing the file of attachment {}", a.item_id))?;
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(summary)
}
