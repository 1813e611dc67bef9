'OK'
)OFF
