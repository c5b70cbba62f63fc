//! A framework's principal is fixed by its certificate ([`super::bind_principal`]).

use super::bind_principal;
use crate::ids::FrameworkId;
use crate::messages::FrameworkInfo;

fn info(principal: Option<&str>) -> FrameworkInfo {
    let mut info = FrameworkInfo::new("fw");
    info.principal = principal.map(str::to_string);
    info
}

#[test]
fn the_certificate_fills_in_or_must_equal_the_principal() {
    let mut i = info(None);
    bind_principal(&mut i, Some(Some("alice")), None).unwrap();
    assert_eq!(i.principal.as_deref(), Some("alice"));
    let mut i = info(Some("alice"));
    bind_principal(&mut i, Some(Some("alice")), None).unwrap();
    assert_eq!(i.principal.as_deref(), Some("alice"));
    let err = bind_principal(&mut info(Some("bob")), Some(Some("alice")), None).unwrap_err();
    assert!(
        err.contains("principal 'bob'") && err.contains("'alice'"),
        "{err}"
    );
    // A certificate without principal proves none: claiming one is refused.
    let err = bind_principal(&mut info(Some("bob")), Some(None), None).unwrap_err();
    assert!(err.contains("names no principal"), "{err}");
    let mut i = info(None);
    bind_principal(&mut i, Some(None), None).unwrap();
    assert_eq!(i.principal, None);
}

#[test]
fn a_registered_framework_stays_with_its_principal() {
    let mut i = info(None);
    i.id = Some(FrameworkId::new("f-1"));
    let err = bind_principal(&mut i.clone(), Some(Some("mallory")), Some("alice")).unwrap_err();
    assert!(err.contains("registered under principal 'alice'"), "{err}");
    let err = bind_principal(&mut i.clone(), Some(None), Some("alice")).unwrap_err();
    assert!(err.contains("'(none)'"), "{err}");
    bind_principal(&mut i, Some(Some("alice")), Some("alice")).unwrap();
}

#[test]
fn local_and_simulated_registrations_are_not_checked() {
    let mut i = info(Some("anyone"));
    bind_principal(&mut i, None, Some("alice")).unwrap();
    assert_eq!(i.principal.as_deref(), Some("anyone"));
}
