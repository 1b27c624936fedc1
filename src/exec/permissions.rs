//! What the device owner lets a Device Client document do beyond running handlers as the
//! component's user: run a step as another user (`runAsUsers`) and start programs outside the
//! handler directory (`runCommandAllowList`).
//!
//! Owns: deciding, for a step's `runAsUser` and a `runCommand` program, whether it may run and
//! as whom, with a reason naming the setting when it may not. Must not know: how the identity
//! is applied to a process (that is [`super::run_as`]) or how steps are sequenced.

use super::run_as::{self, Identity};
use std::path::{Path, PathBuf};

/// The owner's allowances; the default allows nothing beyond the handler directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Users steps may run as (`runAsUsers`). Only honoured when the component runs as root.
    pub run_as_users: Vec<String>,
    /// Absolute paths of programs a `runCommand` step may start (`runCommandAllowList`).
    pub run_command_allow_list: Vec<PathBuf>,
}

/// Who the component is, for [`Permissions::decide_identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    pub euid: u32,
}

impl Component {
    pub fn current() -> Self {
        Self {
            euid: run_as::euid(),
        }
    }
}

impl Permissions {
    /// The identity a step asking for `requested` runs as: `Ok(None)` for the component's own
    /// user (nothing asked, an empty name, or the component's own user), `Ok(Some)` for an
    /// allowed other user, `Err(reason)` otherwise. Looks the user up in the system database.
    pub fn identity_for(&self, requested: Option<&str>) -> Result<Option<Identity>, String> {
        let Some(name) = requested.filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let found = run_as::lookup(name)?;
        self.decide_identity(name, found, Component::current())
    }

    /// The decision of [`Self::identity_for`] once the user database has answered (`found`).
    pub fn decide_identity(
        &self,
        name: &str,
        found: Option<Identity>,
        component: Component,
    ) -> Result<Option<Identity>, String> {
        let Some(identity) = found else {
            return Err(format!("runAsUser {name:?} does not exist on this device"));
        };
        if identity.uid == component.euid {
            return Ok(None);
        }
        if !self.run_as_users.iter().any(|u| u == name) {
            return Err(format!(
                "runAsUser {name:?} is not allowed on this device (add it to the component's runAsUsers setting)"
            ));
        }
        if component.euid != 0 {
            return Err(format!(
                "runAsUser {name:?} is listed in runAsUsers, but the component runs as uid {} and can only switch users when it runs as root (RequiresPrivilege in the recipe)",
                component.euid
            ));
        }
        Ok(Some(identity))
    }

    /// Whether `program`, an absolute path outside the handler directory, may be started by a
    /// `runCommand` step; `Ok` gives the path to run.
    pub fn allowed_command(&self, program: &str) -> Result<PathBuf, String> {
        let path = Path::new(program);
        if path.is_absolute() {
            if self.run_command_allow_list.iter().any(|p| p == path) {
                return Ok(path.to_path_buf());
            }
            return Err(format!(
                "command {program:?} is outside the handler directory and not in the component's runCommandAllowList setting"
            ));
        }
        // A bare name that is not a handler: an allowed program of that file name.
        self.run_command_allow_list
            .iter()
            .find(|p| p.file_name().is_some_and(|f| f == program))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "command {program:?} is neither a handler in the handler directory nor a program in the component's runCommandAllowList setting"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32) -> Option<Identity> {
        Some(Identity {
            name: "svc".into(),
            uid,
            gid: uid,
            groups: vec![uid],
        })
    }

    const ROOT: Component = Component { euid: 0 };
    const GGC_USER: Component = Component { euid: 998 };

    #[test]
    fn another_user_only_when_allowed_and_root() {
        let none = Permissions::default();
        let listed = Permissions {
            run_as_users: vec!["svc".into()],
            ..Permissions::default()
        };
        // Nothing asked, or the component's own user: runs as the component.
        assert_eq!(none.identity_for(None), Ok(None));
        assert_eq!(none.identity_for(Some("")), Ok(None));
        assert_eq!(none.decide_identity("svc", user(998), GGC_USER), Ok(None));
        // Another user: refused unless listed, and unless the component is root.
        let e = none.decide_identity("svc", user(1001), ROOT).unwrap_err();
        assert!(e.contains("runAsUsers"), "{e}");
        let e = listed
            .decide_identity("svc", user(1001), GGC_USER)
            .unwrap_err();
        assert!(
            e.contains("RequiresPrivilege") && e.contains("uid 998"),
            "{e}"
        );
        assert_eq!(
            listed.decide_identity("svc", user(1001), ROOT),
            Ok(user(1001))
        );
        let e = listed.decide_identity("svc", None, ROOT).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn commands_outside_the_handler_directory_need_the_allow_list() {
        let p = Permissions {
            run_command_allow_list: vec!["/usr/bin/uptime".into()],
            ..Permissions::default()
        };
        assert_eq!(
            p.allowed_command("/usr/bin/uptime"),
            Ok("/usr/bin/uptime".into())
        );
        assert_eq!(p.allowed_command("uptime"), Ok("/usr/bin/uptime".into()));
        let e = p.allowed_command("/bin/rm").unwrap_err();
        assert!(e.contains("runCommandAllowList"), "{e}");
        let e = p.allowed_command("rm").unwrap_err();
        assert!(e.contains("runCommandAllowList"), "{e}");
        assert!(Permissions::default()
            .allowed_command("/usr/bin/uptime")
            .is_err());
    }
}
