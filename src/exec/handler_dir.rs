//! The handler directory: the only place executables may come from.
//!
//! Owns: resolving a handler name (and an optional subdirectory) to a file inside the
//! directory after following symlinks, and refusing anything another user could have changed:
//! a directory or file writable by group or others, or owned by someone other than this user or
//! root. Must not know: how the executable is run.

use crate::jobs::document::check_file_name;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// A checked handler directory.
#[derive(Debug, Clone)]
pub struct HandlerDirectory {
    root: PathBuf,
}

fn euid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn check_owner_and_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o}); refusing it",
            path.display(),
            mode & 0o7777
        ));
    }
    let owner = meta.uid();
    if owner != euid() && owner != 0 {
        return Err(format!(
            "{} is owned by uid {owner}, not by this user or root; refusing it",
            path.display()
        ));
    }
    Ok(())
}

impl HandlerDirectory {
    /// Checks and opens `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        let root = path
            .canonicalize()
            .map_err(|e| format!("handler directory {}: {e}", path.display()))?;
        let meta = std::fs::metadata(&root)
            .map_err(|e| format!("handler directory {}: {e}", root.display()))?;
        if !meta.is_dir() {
            return Err(format!(
                "handler directory {} is not a directory",
                root.display()
            ));
        }
        check_owner_and_mode(&root, &meta)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The executable `name`, in `subdir` of the directory when given.
    pub fn resolve(&self, subdir: Option<&str>, name: &str) -> Result<PathBuf, String> {
        check_file_name(name)?;
        let mut dir = self.root.clone();
        if let Some(sub) = subdir {
            // An absolute path (what `pathToHandler` usually holds) may name the directory
            // through a symlink: compare where it really is.
            let real_sub;
            let sub_path = if Path::new(sub).is_absolute() {
                real_sub = Path::new(sub)
                    .canonicalize()
                    .map_err(|e| format!("path {sub:?}: {e}"))?;
                real_sub.as_path()
            } else {
                Path::new(sub)
            };
            let relative = match sub_path.strip_prefix(&self.root) {
                Ok(r) => r.to_path_buf(),
                Err(_) if sub_path.is_absolute() => {
                    return Err(format!("path {sub:?} is outside the handler directory"));
                }
                Err(_) => sub_path.to_path_buf(),
            };
            if relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(format!(
                    "path {sub:?} must name a subdirectory of the handler directory"
                ));
            }
            dir = dir.join(relative);
        }
        let candidate = dir.join(name);
        let real = candidate
            .canonicalize()
            .map_err(|e| format!("handler {name:?}: {e}"))?;
        if !real.starts_with(&self.root) {
            return Err(format!(
                "handler {name:?} resolves outside the handler directory"
            ));
        }
        // Every directory from the root down to the file must be safe too.
        let mut walk = real.parent();
        while let Some(d) = walk {
            let meta = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
            check_owner_and_mode(d, &meta)?;
            if d == self.root {
                break;
            }
            walk = d.parent();
        }
        let meta = std::fs::metadata(&real).map_err(|e| format!("handler {name:?}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("handler {name:?} is not a regular file"));
        }
        check_owner_and_mode(&real, &meta)?;
        if meta.permissions().mode() & 0o100 == 0 {
            return Err(format!("handler {name:?} is not executable"));
        }
        Ok(real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("handlers");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        (t, root)
    }

    fn script(path: &Path, mode: u32) {
        fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn resolves_only_safe_files_inside() {
        let (t, root) = dir();
        script(&root.join("ok.sh"), 0o755);
        script(&root.join("noexec.sh"), 0o644);
        script(&root.join("open.sh"), 0o777);
        script(&t.path().join("outside.sh"), 0o755);
        std::os::unix::fs::symlink(t.path().join("outside.sh"), root.join("link.sh")).unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::set_permissions(root.join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
        script(&root.join("sub").join("in-sub.sh"), 0o700);
        let d = HandlerDirectory::open(&root).unwrap();
        assert!(d.resolve(None, "ok.sh").is_ok());
        assert!(d.resolve(Some("sub"), "in-sub.sh").is_ok());
        assert!(d
            .resolve(None, "noexec.sh")
            .unwrap_err()
            .contains("not executable"));
        assert!(d.resolve(None, "open.sh").unwrap_err().contains("writable"));
        assert!(d.resolve(None, "link.sh").unwrap_err().contains("outside"));
        assert!(d.resolve(None, "../outside.sh").is_err());
        assert!(d.resolve(Some(".."), "outside.sh").is_err());
        assert!(d.resolve(Some("/tmp"), "x").is_err());
        // An absolute path into the directory (through a symlink too) is fine.
        std::os::unix::fs::symlink(&root, t.path().join("alias")).unwrap();
        let alias = t.path().join("alias").join("sub");
        assert!(d.resolve(alias.to_str(), "in-sub.sh").is_ok());
        assert!(d.resolve(root.to_str(), "ok.sh").is_ok());
        assert!(d.resolve(None, "missing.sh").is_err());
        assert!(d.resolve(None, "sub").unwrap_err().contains("regular file"));
    }

    #[test]
    fn a_directory_writable_by_others_is_refused() {
        let (_t, root) = dir();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(HandlerDirectory::open(&root)
            .unwrap_err()
            .contains("writable"));
    }
}
