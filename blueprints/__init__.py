"""HTTP: routes, forms and the choice of template. Thin: each view validates a form, calls a
service, commits once and renders a page or a fragment."""
