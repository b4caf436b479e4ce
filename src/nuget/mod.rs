//! The NuGet model a proxy needs: package ids, versions, and the kinds of
//! files the flat container serves.

mod hashes;
mod id;
mod version;

pub use hashes::{package_hashes, PackageHash};
pub use id::{lower_invariant, IdError, LowerId, MAX_ID_LEN};
pub use version::{NuGetVersion, VersionError};

/// A file under `{PackageBaseAddress}{id}/{version}/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFile {
    Nupkg,
    Nuspec,
    Readme,
    Icon,
}

impl PackageFile {
    /// Recognises `file` (any case) as one of the files of `id`/`version`,
    /// comparing with both the canonical and the requested spelling so that
    /// `/Foo/1.0.0.0/Foo.1.0.0.0.nupkg` works like `/foo/1.0.0/foo.1.0.0.nupkg`.
    pub fn recognise(file: &str, requested: (&str, &str), canonical: (&str, &str)) -> Option<Self> {
        let file = lower_invariant(file);
        let names = |(id, version): (&str, &str)| {
            let (id, version) = (lower_invariant(id), lower_invariant(version));
            (format!("{id}.{version}.nupkg"), format!("{id}.nuspec"))
        };
        for (nupkg, nuspec) in [names(requested), names(canonical)] {
            if file == nupkg {
                return Some(PackageFile::Nupkg);
            }
            if file == nuspec {
                return Some(PackageFile::Nuspec);
            }
        }
        match file.as_str() {
            "readme" => Some(PackageFile::Readme),
            "icon" => Some(PackageFile::Icon),
            _ => None,
        }
    }

    /// The canonical relative path of this file in the flat container.
    pub fn path(self, id: &LowerId, version: &str) -> String {
        match self {
            PackageFile::Nupkg => format!("{id}/{version}/{id}.{version}.nupkg"),
            PackageFile::Nuspec => format!("{id}/{version}/{id}.nuspec"),
            PackageFile::Readme => format!("{id}/{version}/readme"),
            PackageFile::Icon => format!("{id}/{version}/icon"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_package_files_in_any_spelling() {
        let canon = ("foo.bar", "1.0.0");
        assert_eq!(
            PackageFile::recognise("foo.bar.1.0.0.nupkg", canon, canon),
            Some(PackageFile::Nupkg)
        );
        assert_eq!(
            PackageFile::recognise("Foo.Bar.1.0.0.0.nupkg", ("Foo.Bar", "1.0.0.0"), canon),
            Some(PackageFile::Nupkg)
        );
        assert_eq!(
            PackageFile::recognise("FOO.BAR.nuspec", canon, canon),
            Some(PackageFile::Nuspec)
        );
        assert_eq!(
            PackageFile::recognise("readme", canon, canon),
            Some(PackageFile::Readme)
        );
        assert_eq!(PackageFile::recognise("other.1.0.0.nupkg", canon, canon), None);
        assert_eq!(PackageFile::recognise("foo.bar.2.0.0.nupkg", canon, canon), None);
    }
}
