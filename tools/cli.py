def main():
    print("evx")
