echo("OK")
