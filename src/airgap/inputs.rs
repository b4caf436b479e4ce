//! What to warm or export, read from the files a solution already has:
//! `packages.lock.json`, project files (`PackageReference`),
//! `Directory.Packages.props` (`PackageVersion`), `packages.config`, and
//! plain lists (`Id Version` or `Id@Version` a line, `#` comments).

use std::path::Path;

use serde_json::Value;

use super::ranges::{RangeError, VersionRange};
use crate::nuget::{IdError, LowerId, NuGetVersion};

/// One package a file asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// The id as written (display case).
    pub id: String,
    pub range: VersionRange,
    /// `file:line` or `file (framework)`, for error messages.
    pub from: String,
}

impl Wanted {
    pub fn lower_id(&self) -> String {
        crate::nuget::lower_invariant(&self.id)
    }
}

/// Why an input file cannot be read; names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: not valid JSON: {reason}")]
    Json { file: String, reason: String },
    #[error("{file}: not valid XML: {reason}")]
    Xml { file: String, reason: String },
    #[error("{at}: {source}")]
    Id { at: String, source: IdError },
    #[error("{at}: {source}")]
    Range { at: String, source: RangeError },
    #[error("{at}: {reason}")]
    Line { at: String, reason: String },
}

/// The formats an input can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    LockFile,
    MsBuild,
    PackagesConfig,
    List,
}

/// Reads every file (blocking I/O) and returns what they ask for, each
/// package once (the first mention wins), in file order.
pub(crate) fn read_all(files: &[std::path::PathBuf]) -> Result<Vec<Wanted>, InputError> {
    let mut all: Vec<Wanted> = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|source| InputError::Read {
            file: name.clone(),
            source,
        })?;
        for wanted in parse(file, &text)? {
            let duplicate = all
                .iter()
                .any(|w| w.lower_id() == wanted.lower_id() && w.range == wanted.range);
            if !duplicate {
                all.push(wanted);
            }
        }
    }
    Ok(all)
}

/// Parses one file's text, its format told by its name, else by its content.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<Wanted>, InputError> {
    let name = path.display().to_string();
    match format_of(path, text) {
        Format::LockFile => lock_file(&name, text),
        Format::MsBuild => msbuild(&name, text),
        Format::PackagesConfig => packages_config(&name, text),
        Format::List => list(&name, text),
    }
}

fn format_of(path: &Path, text: &str) -> Format {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if file.ends_with(".lock.json") {
        return Format::LockFile;
    }
    if file == "packages.config" || file.ends_with(".packages.config") {
        return Format::PackagesConfig;
    }
    if matches!(
        extension.as_str(),
        "csproj" | "fsproj" | "vbproj" | "props" | "targets" | "proj"
    ) {
        return Format::MsBuild;
    }
    let start = text.trim_start_matches('\u{feff}').trim_start();
    if start.starts_with('{') {
        Format::LockFile
    } else if start.starts_with('<') {
        if start.contains("<packages") && !start.contains("<Project") {
            Format::PackagesConfig
        } else {
            Format::MsBuild
        }
    } else {
        Format::List
    }
}

fn check_id(id: &str, at: &str) -> Result<(), InputError> {
    LowerId::parse(id).map(|_| ()).map_err(|source| InputError::Id {
        at: at.to_string(),
        source,
    })
}

fn range_of(text: &str, at: &str) -> Result<VersionRange, InputError> {
    VersionRange::parse(text).map_err(|source| InputError::Range {
        at: at.to_string(),
        source,
    })
}

fn exact_of(text: &str, at: &str) -> Result<VersionRange, InputError> {
    let version = NuGetVersion::parse(text).map_err(|e| InputError::Line {
        at: at.to_string(),
        reason: e.to_string(),
    })?;
    Ok(VersionRange::exact(version))
}

/// `packages.lock.json` (version 1 and 2): every resolved package of every
/// target framework (RID-specific ones included); project references,
/// which have no `resolved`, are skipped.
fn lock_file(name: &str, text: &str) -> Result<Vec<Wanted>, InputError> {
    let doc: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| InputError::Json {
        file: name.to_string(),
        reason: e.to_string(),
    })?;
    let Some(frameworks) = doc.get("dependencies").and_then(Value::as_object) else {
        return Err(InputError::Json {
            file: name.to_string(),
            reason: "no \"dependencies\" object: not a packages.lock.json".into(),
        });
    };
    let mut out = Vec::new();
    for (framework, packages) in frameworks {
        let Some(packages) = packages.as_object() else { continue };
        for (id, entry) in packages {
            if entry.get("type").and_then(Value::as_str) == Some("Project") {
                continue;
            }
            let Some(resolved) = entry.get("resolved").and_then(Value::as_str) else {
                continue;
            };
            let at = format!("{name} ({framework}, {id})");
            check_id(id, &at)?;
            out.push(Wanted {
                id: id.clone(),
                range: exact_of(resolved, &at)?,
                from: at,
            });
        }
    }
    Ok(out)
}

fn parse_xml<'t>(name: &str, text: &'t str) -> Result<roxmltree::Document<'t>, InputError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(text.trim_start_matches('\u{feff}'), options).map_err(|e| InputError::Xml {
        file: name.to_string(),
        reason: e.to_string(),
    })
}

/// Project files and `Directory.Packages.props`: `PackageReference`,
/// `PackageVersion` and `GlobalPackageReference` items with a version (an
/// attribute or a child element; `VersionOverride` wins). Items under any
/// `Condition` count: a cache warmed for every configuration serves each.
/// References without a version (central package management) come from
/// the props file.
fn msbuild(name: &str, text: &str) -> Result<Vec<Wanted>, InputError> {
    let doc = parse_xml(name, text)?;
    let mut out = Vec::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        let tag = node.tag_name().name();
        if !matches!(tag, "PackageReference" | "PackageVersion" | "GlobalPackageReference") {
            continue;
        }
        let Some(id) = node.attribute("Include").or_else(|| node.attribute("Update")) else {
            continue;
        };
        let child = |wanted: &str| {
            node.children()
                .find(|c| c.is_element() && c.tag_name().name() == wanted)
                .and_then(|c| c.text())
        };
        let version = node
            .attribute("VersionOverride")
            .or_else(|| child("VersionOverride"))
            .or_else(|| node.attribute("Version"))
            .or_else(|| child("Version"))
            .map(str::trim);
        let Some(version) = version.filter(|v| !v.is_empty()) else {
            continue;
        };
        let at = format!("{name}:{} ({tag} {id})", doc.text_pos_at(node.range().start).row);
        if version.contains("$(") {
            return Err(InputError::Line {
                at,
                reason: format!("version {version:?} uses an MSBuild property; give the resolved version"),
            });
        }
        check_id(id.trim(), &at)?;
        out.push(Wanted {
            id: id.trim().to_string(),
            range: range_of(version, &at)?,
            from: at,
        });
    }
    Ok(out)
}

/// `packages.config`: `<package id version>`, exact versions.
fn packages_config(name: &str, text: &str) -> Result<Vec<Wanted>, InputError> {
    let doc = parse_xml(name, text)?;
    let mut out = Vec::new();
    for node in doc.descendants().filter(|n| n.has_tag_name("package")) {
        let at = format!("{name}:{}", doc.text_pos_at(node.range().start).row);
        let (Some(id), Some(version)) = (node.attribute("id"), node.attribute("version")) else {
            return Err(InputError::Line {
                at,
                reason: "a <package> needs id and version".into(),
            });
        };
        check_id(id, &at)?;
        out.push(Wanted {
            id: id.to_string(),
            range: exact_of(version, &at)?,
            from: at,
        });
    }
    Ok(out)
}

/// One `Id Version` or `Id@Version` a line; the version may be a range;
/// `#` starts a comment.
fn list(name: &str, text: &str) -> Result<Vec<Wanted>, InputError> {
    let mut out = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = format!("{name}:{}", number + 1);
        let (id, version) = match line.split_once('@') {
            Some((id, version)) => (id.trim(), version.trim()),
            None => match line.split_once(char::is_whitespace) {
                Some((id, version)) => (id.trim(), version.trim()),
                None => {
                    return Err(InputError::Line {
                        at,
                        reason: format!("{line:?}: expected `Id Version` or `Id@Version`"),
                    })
                }
            },
        };
        check_id(id, &at)?;
        out.push(Wanted {
            id: id.to_string(),
            range: range_of(version, &at)?,
            from: at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(file: &str, text: &str) -> Vec<(String, String)> {
        match parse(Path::new(file), text) {
            Ok(wanted) => wanted.into_iter().map(|w| (w.id, w.range.to_string())).collect(),
            Err(error) => vec![("error".into(), error.to_string())],
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    const LOCK: &str = r#"{
  "version": 1,
  "dependencies": {
    "net6.0": {
      "Newtonsoft.Json": {
        "type": "Direct",
        "requested": "[13.0.1, )",
        "resolved": "13.0.1",
        "contentHash": "ppPFpBcvxdsfUonNcvITKqLl3bqxWbDCZIzDWHzjpdAHRFfZe0Dw9HmA0+za13IdyrgJwpkDTDA9fHaxOrt20A=="
      },
      "Serilog.Sinks.Console": {
        "type": "Direct",
        "requested": "[5.0.0, )",
        "resolved": "5.0.0",
        "contentHash": "IZ6bn79k+3SRXOBpwSOClUHikSkp2toGPCZ0teUkscv4dpDg9E2R2xVsNkLmwddE4OpNVO3N0xiYsAH556vN8Q==",
        "dependencies": { "Serilog": "3.1.0" }
      },
      "Serilog": {
        "type": "Transitive",
        "resolved": "3.1.0",
        "contentHash": "P6G4/4Kt9bT635bhuwdXlJ2SCqqn2nhh4gqFqQueCOr9bK/e7W9ll/IoX1Ter948cV2Z/5+5v8pAfJYUISY03A=="
      },
      "MyCompany.Shared": {
        "type": "Project",
        "dependencies": { "Newtonsoft.Json": "[13.0.1, )" }
      }
    },
    "net6.0/linux-x64": {
      "runtime.linux-x64.Microsoft.NETCore.DotNetAppHost": {
        "type": "Transitive",
        "resolved": "6.0.0-rc.2.21480.5",
        "contentHash": "AAAA"
      }
    },
    "netstandard2.0": {
      "NETStandard.Library": {
        "type": "Direct",
        "requested": "[2.0.3, )",
        "resolved": "2.0.3",
        "contentHash": "st47PosZSHrjECdjeIzZQbzivYBJFv6P2nv4cj2ypdI204DO+vZ7l5raGMiX4eXMJ53RfOIg+/s4DHVZ54Nu2A==",
        "dependencies": { "Microsoft.NETCore.Platforms": "1.1.0" }
      },
      "Microsoft.NETCore.Platforms": {
        "type": "Transitive",
        "resolved": "1.1.0",
        "contentHash": "kz0PEW2lhqygehI/d6XsPCQzD7ff7gUJaVGPVETX611eadGsA3A877GdSlU0LRVMCTH/+P3o2iDTak+S08V2+A=="
      },
      "Newtonsoft.Json": {
        "type": "Direct",
        "requested": "[13.0.1, )",
        "resolved": "13.0.1",
        "contentHash": "ppPFpBcvxdsfUonNcvITKqLl3bqxWbDCZIzDWHzjpdAHRFfZe0Dw9HmA0+za13IdyrgJwpkDTDA9fHaxOrt20A=="
      }
    }
  }
}"#;

    #[test]
    fn lock_files_give_every_resolved_package_of_every_framework() {
        let got = read("src/App/packages.lock.json", LOCK);
        assert_eq!(
            got,
            pairs(&[
                ("Newtonsoft.Json", "[13.0.1]"),
                ("Serilog.Sinks.Console", "[5.0.0]"),
                ("Serilog", "[3.1.0]"),
                (
                    "runtime.linux-x64.Microsoft.NETCore.DotNetAppHost",
                    "[6.0.0-rc.2.21480.5]"
                ),
                ("NETStandard.Library", "[2.0.3]"),
                ("Microsoft.NETCore.Platforms", "[1.1.0]"),
                ("Newtonsoft.Json", "[13.0.1]"),
            ])
        );
        let bad = read("packages.lock.json", r#"{"version": 1}"#);
        assert!(bad[0].1.contains("not a packages.lock.json"), "{bad:?}");
    }

    #[test]
    fn read_all_lists_each_package_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = dir.path().join("packages.lock.json");
        let list = dir.path().join("extra.txt");
        std::fs::write(&lock, LOCK).expect("write");
        std::fs::write(&list, "newtonsoft.json [13.0.1]\nPolly@8.2.0\n").expect("write");
        let all = read_all(&[lock, list]).map_err(|e| e.to_string());
        let ids: Vec<String> = all
            .map(|all| all.into_iter().map(|w| w.id).collect())
            .unwrap_or_default();
        assert_eq!(ids.len(), 7, "{ids:?}");
        assert_eq!(
            ids.iter()
                .filter(|id| id.eq_ignore_ascii_case("newtonsoft.json"))
                .count(),
            1
        );
        assert_eq!(ids.last().map(String::as_str), Some("Polly"));
        let missing = read_all(&[dir.path().join("nope.txt")]).map_err(|e| e.to_string());
        assert!(missing.is_err_and(|e| e.contains("nope.txt")));
    }

    const CSPROJ: &str = r#"<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <TargetFrameworks>net8.0;net472</TargetFrameworks>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="Serilog" Version="3.1.1" />
    <PackageReference Include="Polly" Version="[8.0,9.0)" PrivateAssets="all" />
    <PackageReference Include="Microsoft.Extensions.Logging">
      <Version>8.0.*</Version>
    </PackageReference>
    <ProjectReference Include="..\Shared\Shared.csproj" />
  </ItemGroup>
  <ItemGroup Condition="'$(TargetFramework)' == 'net472'">
    <PackageReference Include="System.ValueTuple" Version="4.5.0" />
    <Reference Include="System.Web" />
  </ItemGroup>
  <ItemGroup Condition=" '$(Configuration)' == 'Debug' ">
    <PackageReference Include="JetBrains.Annotations" Version="2023.3.0" Condition="'$(CI)' != 'true'" />
  </ItemGroup>
</Project>"#;

    #[test]
    fn project_files_give_package_references_under_every_condition() {
        assert_eq!(
            read("App.csproj", CSPROJ),
            pairs(&[
                ("Serilog", "[3.1.1, )"),
                ("Polly", "[8.0.0, 9.0.0)"),
                ("Microsoft.Extensions.Logging", "8.0.*"),
                ("System.ValueTuple", "[4.5.0, )"),
                ("JetBrains.Annotations", "[2023.3.0, )"),
            ])
        );
        let property =
            r#"<Project><ItemGroup><PackageReference Include="X" Version="$(XVersion)" /></ItemGroup></Project>"#;
        let got = read("Lib.fsproj", property);
        assert!(
            got[0].1.contains("Lib.fsproj:1") && got[0].1.contains("MSBuild property"),
            "{got:?}"
        );
        let broken = read("Lib.vbproj", "<Project><ItemGroup>");
        assert!(broken[0].1.starts_with("Lib.vbproj: not valid XML"), "{broken:?}");
    }

    #[test]
    fn central_package_management_reads_versions_from_the_props_file() {
        let props = r#"<Project>
  <PropertyGroup>
    <ManagePackageVersionsCentrally>true</ManagePackageVersionsCentrally>
  </PropertyGroup>
  <ItemGroup>
    <PackageVersion Include="Newtonsoft.Json" Version="13.0.3" />
    <PackageVersion Include="xunit" Version="2.6.2" />
    <PackageVersion Include="Azure.Core" Version="[1.36.0]" />
  </ItemGroup>
  <ItemGroup Label="Analyzers">
    <GlobalPackageReference Include="StyleCop.Analyzers" Version="1.2.0-beta.556" />
  </ItemGroup>
</Project>"#;
        assert_eq!(
            read("Directory.Packages.props", props),
            pairs(&[
                ("Newtonsoft.Json", "[13.0.3, )"),
                ("xunit", "[2.6.2, )"),
                ("Azure.Core", "[1.36.0]"),
                ("StyleCop.Analyzers", "[1.2.0-beta.556, )"),
            ])
        );
        // The project of such a solution names packages without versions,
        // except for an override.
        let project = r#"<Project Sdk="Microsoft.NET.Sdk">
  <ItemGroup>
    <PackageReference Include="Newtonsoft.Json" />
    <PackageReference Include="xunit" VersionOverride="2.5.0" />
  </ItemGroup>
</Project>"#;
        assert_eq!(read("Tests.csproj", project), pairs(&[("xunit", "[2.5.0, )")]));
    }

    #[test]
    fn packages_config_gives_exact_versions() {
        let config = r#"<?xml version="1.0" encoding="utf-8"?>
<packages>
  <package id="Newtonsoft.Json" version="12.0.3" targetFramework="net472" />
  <package id="EntityFramework" version="6.4.4" targetFramework="net472" allowedVersions="[6,7)" />
  <package id="Microsoft.Net.Compilers" version="2.4.0.0" targetFramework="net472" developmentDependency="true" />
</packages>"#;
        assert_eq!(
            read("web/packages.config", config),
            pairs(&[
                ("Newtonsoft.Json", "[12.0.3]"),
                ("EntityFramework", "[6.4.4]"),
                ("Microsoft.Net.Compilers", "[2.4.0]"),
            ])
        );
        let bad = read("packages.config", r#"<packages><package id="X" /></packages>"#);
        assert!(bad[0].1.contains("packages.config:1"), "{bad:?}");
    }

    #[test]
    fn plain_lists_take_both_spellings_ranges_and_comments() {
        let text = "# tools for CI\nNewtonsoft.Json 13.0.3\n\nSerilog@3.1.1   # pinned\n  Polly [8.0,9.0)\nxunit 2.*\n";
        assert_eq!(
            read("wanted.txt", text),
            pairs(&[
                ("Newtonsoft.Json", "[13.0.3, )"),
                ("Serilog", "[3.1.1, )"),
                ("Polly", "[8.0.0, 9.0.0)"),
                ("xunit", "2.*"),
            ])
        );
        let bad = read("wanted.txt", "ok 1.0\njustanid\n");
        assert!(bad[0].1.starts_with("wanted.txt:2:"), "{bad:?}");
        let bad_id = read("wanted.txt", "bad/id 1.0\n");
        assert!(bad_id[0].1.starts_with("wanted.txt:1:"), "{bad_id:?}");
        let bad_range = read("wanted.txt", "x [2.0,1.0]\n");
        assert!(bad_range[0].1.contains("minimum is above"), "{bad_range:?}");
    }

    #[test]
    fn the_format_is_told_by_content_when_the_name_does_not() {
        assert_eq!(read("lock.json", LOCK).len(), 7);
        let config = r#"<packages><package id="A" version="1.0.0" /></packages>"#;
        assert_eq!(read("deps.xml", config), pairs(&[("A", "[1.0.0]")]));
        let project = r#"<Project><ItemGroup><PackageReference Include="B" Version="2.0" /></ItemGroup></Project>"#;
        assert_eq!(read("deps.xml", project), pairs(&[("B", "[2.0.0, )")]));
    }
}
