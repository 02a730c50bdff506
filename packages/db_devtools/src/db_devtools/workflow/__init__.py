"""The authoring and validation workflow of the migration histories."""
