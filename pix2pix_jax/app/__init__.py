"""pix2pix-app: the browser page to colour photos by eye (docs/app.md). `engine` keeps a photo
prepared for fast edits, `session` a browser tab's hints, `actions` the edits, `page` the Gradio
layout, `palette` and `canvas` what it draws, `main` the command. Needs the `app` extra."""
