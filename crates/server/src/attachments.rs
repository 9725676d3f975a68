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

/// How `compress` re-encodes, from the configuration.
#[derive(Clone, Debug)]
pub struct CompressSettings {
    pub video_bitrate: String,
    pub video_height: u32,
    pub audio_codec: String,
    pub audio_bitrate: String,
    pub image_max: u32,
    pub image_format: String,
}

impl CompressSettings {
    pub fn from_config(c: &crate::Config) -> Self {
        CompressSettings {
            video_bitrate: c.compress_video_bitrate.clone(),
            video_height: c.compress_video_height,
            audio_codec: c.compress_audio_codec.clone(),
            audio_bitrate: c.compress_audio_bitrate.clone(),
            image_max: c.compress_image_max,
            image_format: c.compress_image_format.clone(),
        }
    }
}

/// What happened to one attachment.
#[derive(Debug, PartialEq, Eq)]
pub enum Compressed {
    /// Replaced: sizes before and after, and the file's name now (its extension follows
    /// the new format; the old name's URL redirects to the new one).
    Smaller {
        before: u64,
        after: u64,
        filename: String,
    },
    /// The re-encoded file was not smaller; the original stays.
    NotSmaller { before: u64, after: u64 },
    /// Not audio, video or an image.
    Skipped,
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("ffmpeg was not found on PATH: install it (e.g. apt-get install ffmpeg)")]
    FfmpegMissing,
    #[error("ffmpeg failed: {0}")]
    FfmpegFailed(String),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

/// The FFmpeg output arguments, and the resulting MIME type and file extension, for a
/// MIME type.
fn plan(mime: &str, s: &CompressSettings) -> Option<(Vec<String>, &'static str, &'static str)> {
    let args = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    if mime.starts_with("video/") {
        let scale = format!("scale=-2:'min({},ih)'", s.video_height);
        let mut a = args(&[
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-b:v",
        ]);
        a.push(s.video_bitrate.clone());
        a.extend(args(&["-vf"]));
        a.push(scale);
        a.extend(args(&[
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ]));
        Some((a, "video/mp4", "mp4"))
    } else if mime.starts_with("audio/") {
        let (codec, format, out_mime, ext) = if s.audio_codec == "aac" {
            ("aac", "ipod", "audio/mp4", "m4a")
        } else {
            ("libopus", "ogg", "audio/ogg", "ogg")
        };
        let mut a = args(&["-vn", "-c:a", codec, "-b:a"]);
        a.push(s.audio_bitrate.clone());
        a.extend(args(&["-f", format]));
        Some((a, out_mime, ext))
    } else if mime.starts_with("image/") && mime != "image/gif" && mime != "image/svg+xml" {
        let scale = format!(
            "scale='min({m},iw)':'min({m},ih)':force_original_aspect_ratio=decrease",
            m = s.image_max
        );
        let mut a = args(&["-frames:v", "1", "-vf"]);
        a.push(scale);
        if s.image_format == "jpeg" {
            a.extend(args(&["-c:v", "mjpeg", "-q:v", "5", "-f", "image2"]));
            Some((a, "image/jpeg", "jpg"))
        } else {
            a.extend(args(&["-c:v", "libwebp", "-quality", "80", "-f", "webp"]));
            Some((a, "image/webp", "webp"))
        }
    } else {
        None
    }
}

/// The media's duration in microseconds, for the progress bar (0 when unknown).
async fn duration_us(input: &std::path::Path) -> u64 {
    let out = tokio::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(input)
        .output()
        .await;
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map_or(0, |secs| (secs * 1e6) as u64)
}

/// A file's SHA-256 (hex) and size, read in pieces: a re-encoded video is never held
/// whole in memory.
async fn hash_file(path: &std::path::Path) -> std::io::Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Re-encode one attachment with FFmpeg; keep the result only when it is smaller. The new
/// content is published under its own hash before the attachment points at it, so readers
/// see the old file or the new one, never a partial one; the ETag changes with the hash.
pub async fn compress(
    core: &Arc<Core>,
    blobs: &dyn BlobStore,
    item_id: u64,
    settings: &CompressSettings,
    quiet: bool,
) -> Result<Compressed, CompressError> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};

    let a = core
        .attachment_for_admin(item_id)
        .await
        .map_err(anyhow::Error::from)?;
    let Some((output_args, mime, extension)) = plan(&a.mimetype, settings) else {
        return Ok(Compressed::Skipped);
    };
    let input = blobs
        .local_path(&a.sha256)
        .ok_or_else(|| anyhow::anyhow!("attachment {item_id} has no local file"))?;
    let staged = blobs.staging_path();
    let total = duration_us(&input).await;
    let progress = bar(total.max(1), quiet);
    progress.set_message(a.filename.clone());
    let mut child = match tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-y",
            "-loglevel",
            "error",
            "-progress",
            "pipe:1",
            "-nostats",
            "-i",
        ])
        .arg(&input)
        .args(&output_args)
        .arg(&staged)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CompressError::FfmpegMissing)
        }
        Err(e) => return Err(CompressError::FfmpegFailed(e.to_string())),
    };
    let mut stderr = child.stderr.take();
    if let Some(stdout) = child.stdout.take() {
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(us) = line
                .strip_prefix("out_time_us=")
                .and_then(|v| v.parse::<u64>().ok())
            {
                progress.set_position(us.min(total));
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| CompressError::FfmpegFailed(e.to_string()))?;
    progress.finish_and_clear();
    if !status.success() {
        let mut text = String::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_string(&mut text).await;
        }
        let _ = tokio::fs::remove_file(&staged).await;
        return Err(CompressError::FfmpegFailed(text.trim().to_string()));
    }
    let (sha, after) = hash_file(&staged).await.map_err(anyhow::Error::from)?;
    if after == 0 || after >= a.size {
        let _ = tokio::fs::remove_file(&staged).await;
        return Ok(Compressed::NotSmaller {
            before: a.size,
            after,
        });
    }
    blobs
        .publish(&staged, &sha)
        .await
        .map_err(anyhow::Error::from)?;
    let filename = core
        .replace_attachment_content(item_id, sha, after, mime.to_string(), extension)
        .await
        .map_err(anyhow::Error::from)?;
    if !core
        .blob_in_use(&a.sha256, item_id)
        .await
        .map_err(anyhow::Error::from)?
    {
        blobs.remove(&a.sha256).await.map_err(anyhow::Error::from)?;
    }
    Ok(Compressed::Smaller {
        before: a.size,
        after,
        filename,
    })
}
