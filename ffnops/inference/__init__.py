"""Running a registered model over a box: one canvas (:mod:`.runner`), or blockwise with global
object ids (:mod:`.blockwise`) on an executor found through the plugin hooks (:mod:`.executors`).
"""
