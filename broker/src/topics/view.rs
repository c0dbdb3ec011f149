//! A read-only view of the metadata: the image the controller published last, and a
//! way to follow the images it publishes next. Readers hold this instead of the
//! controller, so that only topic administration can change metadata.

use std::sync::Arc;

use tokio::sync::watch;

use crate::metadata::MetadataImage;

/// The current metadata image and its changes; clones are cheap and independent.
#[derive(Debug, Clone)]
pub struct MetadataView {
    images: watch::Receiver<Arc<MetadataImage>>,
}

impl MetadataView {
    /// A view of the images published on the channel `images` receives from (such as
    /// [`crate::metadata::Controller::subscribe`]).
    pub fn new(images: watch::Receiver<Arc<MetadataImage>>) -> Self {
        Self { images }
    }

    /// The current image.
    pub fn current(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    /// A receiver that reports every image published from now on (the current one
    /// counts as seen).
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        let mut receiver = self.images.clone();
        receiver.mark_unchanged();
        receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The view reads whatever was published last, and a subscription made after a
    /// publication reports only the later ones.
    #[tokio::test]
    async fn follows_the_published_images() {
        let (publish, images) = watch::channel(Arc::new(MetadataImage::default()));
        let view = MetadataView::new(images);
        let image = |cluster_id: &str| {
            let mut image = MetadataImage::default();
            image.cluster_id = cluster_id.to_owned();
            Arc::new(image)
        };
        publish.send_replace(image("first"));
        assert_eq!(view.current().cluster_id, "first");
        let mut changes = view.subscribe();
        assert!(
            !changes.has_changed().unwrap(),
            "the current image counts as seen"
        );
        publish.send_replace(image("second"));
        changes.changed().await.unwrap();
        assert_eq!(changes.borrow_and_update().cluster_id, "second");
        assert_eq!(view.current().cluster_id, "second");
    }
}
