//! [`Items`]: the class and the source image of every descriptor row.

use crate::error::AlignmentError;

/// Per descriptor row, its class and the image it was cut from (any integers; only equality
/// matters).
#[derive(Debug, Clone, Copy)]
pub struct Items<'a> {
    classes: &'a [usize],
    images: &'a [usize],
}

impl<'a> Items<'a> {
    /// Pairs `classes` and `images`, one entry each per row.
    ///
    /// # Errors
    /// [`AlignmentError::LabelCount`] if the two lists differ in length.
    pub fn new(classes: &'a [usize], images: &'a [usize]) -> Result<Self, AlignmentError> {
        if classes.len() != images.len() {
            return Err(AlignmentError::LabelCount {
                what: "images",
                got: images.len(),
                rows: classes.len(),
            });
        }
        Ok(Self { classes, images })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The classes.
    pub fn classes(&self) -> &'a [usize] {
        self.classes
    }

    /// The images.
    pub fn images(&self) -> &'a [usize] {
        self.images
    }

    /// Whether items `i` and `j` come from different images (so the pair counts).
    pub(crate) fn apart(&self, i: usize, j: usize) -> bool {
        self.images[i] != self.images[j]
    }

    /// Checks that there is one item per row of an `rows`-row set.
    pub(crate) fn check(&self, rows: usize) -> Result<(), AlignmentError> {
        if self.len() == rows {
            Ok(())
        } else {
            Err(AlignmentError::LabelCount { what: "classes", got: self.len(), rows })
        }
    }
}
