"""De-identified research exports: studies selected by an admin, de-identified per PS3.15's Basic Application
Level Confidentiality Profile (dicognito, keyed per export project), with labels, a manifest and an audit
trail; built in the background and downloadable once by the admin who asked for it."""
