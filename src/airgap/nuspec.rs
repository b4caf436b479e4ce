//! A package's dependencies from its `.nuspec`, per target framework, as
//! restore walks them.

use super::ranges::VersionRange;

/// One dependency: an id and the range it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dependency {
    pub id: String,
    pub range: VersionRange,
}

/// The dependencies of `nuspec` for `framework` (a TFM such as
/// `netstandard2.0`), or of every group when `None`. A group matches when
/// its framework is the same once normalized (`.NETStandard2.0` is
/// `netstandard2.0`); with no such group the group without a framework
/// applies, and with neither every group does (better a package too many in
/// an air-gapped cache than one missing). Dependencies whose range cannot
/// be read are skipped, as restore skips what it cannot parse.
pub(crate) fn dependencies(nuspec: &str, framework: Option<&str>) -> Result<Vec<Dependency>, String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(nuspec.trim_start_matches('\u{feff}'), options)
        .map_err(|e| format!("nuspec is not valid XML: {e}"))?;
    let Some(section) = doc.descendants().find(|n| n.has_tag_name("dependencies")) else {
        return Ok(Vec::new());
    };
    let groups: Vec<roxmltree::Node> = section.children().filter(|n| n.has_tag_name("group")).collect();
    let chosen: Vec<roxmltree::Node> = if groups.is_empty() {
        vec![section]
    } else {
        match framework.map(normalize_framework) {
            None => groups,
            Some(wanted) => {
                let exact: Vec<_> = groups
                    .iter()
                    .copied()
                    .filter(|g| g.attribute("targetFramework").map(normalize_framework).as_deref() == Some(&wanted))
                    .collect();
                let any: Vec<_> = groups
                    .iter()
                    .copied()
                    .filter(|g| g.attribute("targetFramework").is_none_or(|f| f.trim().is_empty()))
                    .collect();
                [exact, any, groups]
                    .into_iter()
                    .find(|g| !g.is_empty())
                    .unwrap_or_default()
            }
        }
    };
    let mut out: Vec<Dependency> = Vec::new();
    for group in chosen {
        for node in group.children().filter(|n| n.has_tag_name("dependency")) {
            let Some(id) = node.attribute("id").map(str::trim).filter(|id| !id.is_empty()) else {
                continue;
            };
            // No version: any version, and restore takes the lowest.
            let text = node.attribute("version").map(str::trim).filter(|v| !v.is_empty());
            let Ok(range) = VersionRange::parse(text.unwrap_or("0.0.0")) else {
                continue;
            };
            let dependency = Dependency {
                id: id.to_string(),
                range,
            };
            if !out.contains(&dependency) {
                out.push(dependency);
            }
        }
    }
    Ok(out)
}

/// `.NETStandard2.0` -> `netstandard2.0`, `.NETFramework4.7.2` -> `net472`,
/// `.NETCoreApp3.1` -> `netcoreapp3.1`; short names stay as they are.
pub(crate) fn normalize_framework(framework: &str) -> String {
    let lower = framework.trim().to_ascii_lowercase();
    if let Some(version) = lower.strip_prefix(".netframework") {
        return format!("net{}", version.replace('.', ""));
    }
    if let Some(version) = lower.strip_prefix(".netstandard") {
        return format!("netstandard{version}");
    }
    if let Some(version) = lower.strip_prefix(".netcoreapp") {
        // net5.0 and later are `.NETCoreApp5.0` in nuspecs.
        let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        return if major >= 5 {
            format!("net{version}")
        } else {
            format!("netcoreapp{version}")
        };
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUSPEC: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>Nucache.Sample.App</id>
    <version>1.1.0</version>
    <dependencies>
      <group targetFramework=".NETStandard2.0">
        <dependency id="Nucache.Sample.Core" version="[1.2.0, )" exclude="Build,Analyzers" />
        <dependency id="Nucache.MixedCASE.Id" version="1.0.0" />
      </group>
      <group targetFramework=".NETFramework4.7.2">
        <dependency id="Nucache.Sample.Core" version="[1.2.0, )" />
      </group>
      <group targetFramework="net8.0" />
    </dependencies>
  </metadata>
</package>"#;

    fn ids(framework: Option<&str>) -> Vec<String> {
        dependencies(NUSPEC, framework)
            .map(|deps| deps.into_iter().map(|d| format!("{} {}", d.id, d.range)).collect())
            .unwrap_or_else(|e| vec![e])
    }

    #[test]
    fn every_group_without_a_framework() {
        assert_eq!(
            ids(None),
            ["Nucache.Sample.Core [1.2.0, )", "Nucache.MixedCASE.Id [1.0.0, )"]
        );
    }

    #[test]
    fn the_group_of_the_framework_asked_for() {
        assert_eq!(ids(Some("net472")), ["Nucache.Sample.Core [1.2.0, )"]);
        assert_eq!(ids(Some("netstandard2.0")).len(), 2);
        assert!(ids(Some("net8.0")).is_empty(), "net8.0's group is empty");
        assert_eq!(ids(Some("net6.0")).len(), 2, "no match: every group");
    }

    #[test]
    fn flat_dependency_lists_and_none() {
        let flat = r#"<package><metadata><dependencies><dependency id="A" version="[1.0]"/><dependency id="B"/></dependencies></metadata></package>"#;
        let deps =
            dependencies(flat, Some("net8.0")).map(|d| d.into_iter().map(|d| d.range.to_string()).collect::<Vec<_>>());
        assert_eq!(deps, Ok(vec!["[1.0.0]".to_string(), "[0.0.0, )".to_string()]));
        assert_eq!(dependencies("<package><metadata/></package>", None), Ok(Vec::new()));
        assert!(dependencies("<package>", None).is_err());
    }

    #[test]
    fn frameworks_normalize_to_short_names() {
        assert_eq!(normalize_framework(".NETStandard2.0"), "netstandard2.0");
        assert_eq!(normalize_framework(".NETFramework4.7.2"), "net472");
        assert_eq!(normalize_framework(".NETCoreApp3.1"), "netcoreapp3.1");
        assert_eq!(normalize_framework(".NETCoreApp8.0"), "net8.0");
        assert_eq!(normalize_framework("NET8.0"), "net8.0");
    }
}
