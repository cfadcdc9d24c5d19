from failsmall.drill.hotwired.node import main

main()
