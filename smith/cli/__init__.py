"""The command lines of smith (and crashcart's error reporting): everything that knows about
argv, click, exit codes and the terminal. The library below (smith.build, smith.minimize,
smith.oci, smith.resolve, ...) takes options objects and raises the SmithError family.

Importing this package costs nothing: crashcart's attach path imports smith.cli.reporting
and must not pay for click."""
