console.log "OK"
