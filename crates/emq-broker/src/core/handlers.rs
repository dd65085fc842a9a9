//! Handler names, interned as small ids: what jobmanagers declare at INFORM,
//! and what a job calls, read from its body only where it matters (a queue
//! whose jobmanagers declare different handlers).

use std::rc::Rc;

use crate::HashMap;

/// A handler name, interned. Two ids are special: a job whose handler has
/// not been read yet, and a job whose body names none that can be read
/// (any jobmanager may take it, and reports it as a bad request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct HandlerId(u32);

impl HandlerId {
    pub(super) const UNREAD: HandlerId = HandlerId(0);
    pub(super) const UNREADABLE: HandlerId = HandlerId(1);
}

/// Most handler names remembered.
pub(crate) const MAX_NAMES: usize = 65_536;

#[derive(Debug)]
pub(crate) struct HandlerNames {
    ids: HashMap<Rc<str>, HandlerId>,
    names: Vec<Rc<str>>,
}

impl HandlerNames {
    pub(super) fn new(hasher: crate::Hasher) -> HandlerNames {
        HandlerNames {
            ids: HashMap::with_hasher(hasher),
            names: vec!["(unread)".into(), "(unreadable)".into()],
        }
    }

    /// The id of `name`, made if new. Past [`MAX_NAMES`] names (clients
    /// inventing handler names) a new one is [`HandlerId::UNREADABLE`]:
    /// routed to any jobmanager, which reports it unknown.
    pub(super) fn intern(&mut self, name: &str) -> HandlerId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        if self.names.len() >= MAX_NAMES {
            return HandlerId::UNREADABLE;
        }
        let id = HandlerId(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        let name: Rc<str> = name.into();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}
