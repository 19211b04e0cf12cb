"""What people look at: comparison strips and the static results page.

``gallery`` draws ``compare/<name>.jpg`` strips (rainy | derained | clean, captioned) and
writes ``index.html`` (sorted by gain, works offline); the audit's thumbnails use it too.
Asks ``loading.images`` for writing files; OpenCV and numpy only.
"""
