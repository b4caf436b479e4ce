//! Which package a push carried: the id and version from the `.nuspec`
//! inside the uploaded `.nupkg` (itself inside a multipart body), read from
//! the copy of the upload kept on disk. Needed to refresh the cached
//! metadata of exactly that id.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// How far into the upload the first part's body must start.
const HEAD_WINDOW: u64 = 16 * 1024;
/// How far from the end the closing boundary must be.
const TAIL_WINDOW: u64 = 16 * 1024;
/// Largest `.nuspec` read.
const MAX_NUSPEC: u64 = 1024 * 1024;

/// `(id, version)` of the package in an upload, when it can be read.
pub(crate) fn pushed_package(mut upload: File, content_type: &str) -> Option<(String, String)> {
    let len = upload.metadata().ok()?.len();
    let (start, end) = match boundary_of(content_type) {
        Some(boundary) => part_bounds(&mut upload, len, &boundary)?,
        None => (0, len),
    };
    let window = Window::new(upload, start, end).ok()?;
    let mut archive = zip::ZipArchive::new(window).ok()?;
    let name = archive
        .file_names()
        .find(|n| !n.contains('/') && n.to_ascii_lowercase().ends_with(".nuspec"))?
        .to_string();
    let mut nuspec = String::new();
    archive
        .by_name(&name)
        .ok()?
        .take(MAX_NUSPEC)
        .read_to_string(&mut nuspec)
        .ok()?;
    identity_of(&nuspec)
}

/// `boundary=` of a `multipart/*` content type.
fn boundary_of(content_type: &str) -> Option<String> {
    if !content_type.trim_start().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    content_type.split(';').find_map(|param| {
        let (name, value) = param.trim().split_once('=')?;
        name.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"').to_string())
    })
}

/// The byte range of the first part's body: after its headers, up to the
/// delimiter that follows it.
fn part_bounds(upload: &mut File, len: u64, boundary: &str) -> Option<(u64, u64)> {
    let head = read_range(upload, 0, HEAD_WINDOW.min(len))?;
    let opening = memchr::memmem::find(&head, format!("--{boundary}").as_bytes())?;
    let headers_end = memchr::memmem::find(&head[opening..], b"\r\n\r\n")? + opening + 4;
    let tail_start = len.saturating_sub(TAIL_WINDOW).max(headers_end as u64);
    let tail = read_range(upload, tail_start, len - tail_start)?;
    let closing = memchr::memmem::rfind(&tail, format!("\r\n--{boundary}").as_bytes())?;
    Some((headers_end as u64, tail_start + closing as u64))
}

fn read_range(file: &mut File, start: u64, len: u64) -> Option<Vec<u8>> {
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut buffer = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buffer).ok()?;
    Some(buffer)
}

/// The first `<id>` and `<version>` elements of a nuspec's metadata.
fn identity_of(nuspec: &str) -> Option<(String, String)> {
    let metadata = &nuspec[nuspec.find("<metadata")?..];
    let element = |name: &str| {
        let open = format!("<{name}>");
        let start = metadata.find(&open)? + open.len();
        let end = start + metadata[start..].find(&format!("</{name}>"))?;
        let value = metadata[start..end].trim();
        (!value.is_empty()).then(|| value.to_string())
    };
    Some((element("id")?, element("version")?))
}

/// A read-only view of `[start, end)` of a file, as the zip reader needs.
struct Window {
    file: File,
    start: u64,
    len: u64,
    position: u64,
}

impl Window {
    fn new(mut file: File, start: u64, end: u64) -> io::Result<Window> {
        file.seek(SeekFrom::Start(start))?;
        Ok(Window {
            file,
            start,
            len: end.saturating_sub(start),
            position: 0,
        })
    }
}

impl Read for Window {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.position) as usize;
        let wanted = buffer.len().min(left);
        if wanted == 0 {
            return Ok(0);
        }
        let read = self.file.read(&mut buffer[..wanted])?;
        self.position += read as u64;
        Ok(read)
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(n) => self.len as i128 + n as i128,
            SeekFrom::Current(n) => self.position as i128 + n as i128,
        };
        if target < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"));
        }
        let target = (target as u64).min(self.len);
        self.file.seek(SeekFrom::Start(self.start + target))?;
        self.position = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn nupkg(id: &str, version: &str) -> Vec<u8> {
        let mut out = io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut out);
            let options = zip::write::SimpleFileOptions::default();
            let _ = zip.start_file("_rels/.rels", options);
            let _ = zip.write_all(b"<Relationships/>");
            let _ = zip.start_file(format!("{id}.nuspec"), options);
            let nuspec = format!(
                "<?xml version=\"1.0\"?><package xmlns=\"http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd\">\
                 <metadata><id>{id}</id><version>{version}</version><dependencies>\
                 <dependency id=\"Other\" version=\"1.0.0\"/></dependencies></metadata></package>"
            );
            let _ = zip.write_all(nuspec.as_bytes());
            let _ = zip.finish();
        }
        out.into_inner()
    }

    fn file_with(bytes: &[u8]) -> File {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(bytes).expect("write");
        file
    }

    #[test]
    fn reads_the_identity_from_a_multipart_upload() {
        let package = nupkg("My.Package", "1.2.3-beta");
        let mut body = b"--XYZ\r\nContent-Type: application/octet-stream\r\nContent-Disposition: form-data; name=package; filename=package.nupkg\r\n\r\n".to_vec();
        body.extend_from_slice(&package);
        body.extend_from_slice(b"\r\n--XYZ--\r\n");
        let found = pushed_package(file_with(&body), "multipart/form-data; boundary=\"XYZ\"");
        assert_eq!(found, Some(("My.Package".to_string(), "1.2.3-beta".to_string())));
    }

    #[test]
    fn reads_a_raw_package_and_refuses_garbage() {
        let package = nupkg("Raw", "2.0.0");
        assert_eq!(
            pushed_package(file_with(&package), "application/octet-stream"),
            Some(("Raw".to_string(), "2.0.0".to_string()))
        );
        assert_eq!(
            pushed_package(file_with(b"not a zip"), "application/octet-stream"),
            None
        );
        assert_eq!(
            pushed_package(file_with(b"--B\r\n\r\nxx\r\n--B--"), "multipart/form-data; boundary=B"),
            None
        );
    }
}
